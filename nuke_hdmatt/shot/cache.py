"""Content-addressed per-frame alpha cache, shared by the CLI and the Nuke plugin.

A frame's key is a sha256 over everything that decides its alpha: the plate pixels, the trimap
pixels, the weights' sha256, the engine version, the engine parameters, the OCIO config and
the plate's colour space. Re-running a shot therefore recomputes exactly the frames whose
inputs or settings changed, and a stale entry can never be served after a change.

Where it lives (first that is set): ``--cache DIR`` / ``FrameCache(root)``, ``$HDMATT_CACHE``,
``$XDG_CACHE_HOME/hdmatt``, ``~/.cache/hdmatt``.

Entry file (``<root>/<key[:2]>/<key>.alpha``)::

    b"HDMATTC1" | uint32 little-endian header length | header JSON | zlib(float32 alpha)

The header holds the key, shape, and the sha256 of the compressed payload. Entries are written
to a temporary file in the same folder and renamed into place, so a reader sees either no entry
or a whole one, also when two processes (two farm tasks, Nuke and the CLI) write the same key at
once: the last rename wins and both contents are identical. A payload whose checksum does not
match is deleted and reported as a miss, so the frame is recomputed.

Size: the cache keeps itself under a limit, ``$HDMATT_CACHE_MAX_SIZE`` (``500M``, ``50G``;
``0`` for none), else :data:`DEFAULT_MAX_BYTES`. A run trims the least recently used entries
after every twentieth of the limit it writes and when it ends, so a workstation's disk never
fills with the frames of every setting ever tried (entries take about 0.4 bytes a pixel
for an alpha, 3 for a foreground colour: 10 and 70 MB for a 6K frame). Entries another user
owns in a shared folder are theirs to remove.

The cache is an accelerator, never a reason to stop: a folder that cannot be created, read or
written (a file in its place, read-only, another user's unreadable entry, a full disk) gives
one warning naming the folder and the run goes on without it; an unreadable size limit gives
one warning and the default. Entries get the permissions an
ordinary file would (the umask; a setgid folder's group is inherited), and the two-letter
folders that hold them the cache folder's own permissions (a group-writable cache stays
group-writable whatever the umask of whoever made a folder first), so one cache folder can
be shared by the farm and the workstations of a group. A folder of it this process may not
write into costs only the frames that belong there; a full or read-only disk stops storing
for the rest of the run.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import current_umask, new_temp_file, remove_all
from ..errors import UsageError

__all__ = ["FrameCache", "CacheEntry", "default_cache_root", "parse_size", "format_size"]

MAGIC = b"HDMATTC1"
SUFFIX = ".alpha"
TMP_PREFIX = ".tmp-"
_SHARD = re.compile(r"[0-9a-f]{2}")
_ENTRY = re.compile(r"[0-9a-f]{64}" + re.escape(SUFFIX))
_TEMP = re.compile(re.escape(TMP_PREFIX) + r"[0-9a-f]{16}-.+")  # put's, named by its key
_PROBE = TMP_PREFIX + "probe-"  # usable()'s, in the root
# A temp file older than this belongs to a killed process (a live write takes seconds).
STALE_TMP_S = 3600.0
KEY_SCHEMA = "hdmatt-cache-key-1"
DEFAULT_MAX_BYTES = 50 * 1024 ** 3
MAX_SIZE_ENV = "HDMATT_CACHE_MAX_SIZE"
TRIM_SHARE = 20        # trim after writing 1/TRIM_SHARE of the limit

log = logging.getLogger(__name__)


def default_cache_root() -> Path:
    """The cache folder when none is given: ``$HDMATT_CACHE`` else the XDG cache folder."""
    env = os.environ.get("HDMATT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "hdmatt"


_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def parse_size(text: str) -> int:
    """``"10G"``, ``"500M"``, ``"1.5T"``, ``"4096"`` -> bytes (binary units)."""
    s = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    unit = s[-1:] if s[-1:] in _UNITS and s[-1:].isalpha() else ""
    number = s[: len(s) - len(unit)]
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        value = math.nan
    # float() also takes nan, inf and 1e400 (and 1e308G overflows): no size
    if not math.isfinite(value):
        raise UsageError(f"cannot parse size {text!r} (use e.g. 500M, 10G)")
    if value < 0:
        raise UsageError(f"size must not be negative: {text!r}")
    return int(value)


def format_size(n: int) -> str:
    """Bytes -> a short human string (``"1.2G"``)."""
    value = float(n)
    for unit in ("B", "K", "M", "G"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}T"


@dataclass
class CacheEntry:
    """One stored frame: its key, file, size in bytes, last use (epoch s) and metadata."""

    key: str
    path: Path
    size: int
    mtime: float
    meta: dict = field(default_factory=dict)


def _hash_array(h, name: str, arr: np.ndarray) -> None:
    arr = np.ascontiguousarray(arr)
    # shape and dtype go in too: the same bytes as 100x60 and 60x100 are different frames
    h.update(f"{name}:{arr.dtype.str}:{arr.shape}\n".encode())
    h.update(arr.data.cast("B"))


class FrameCache:
    """Per-frame alpha cache in a folder.

    Parameters
    ----------
    root : str or Path, optional
        Cache folder; ``None`` uses :func:`default_cache_root`. Created on first write.
    max_bytes : int, optional
        The size :meth:`put` keeps the cache under (0: no limit); ``None`` reads
        ``$HDMATT_CACHE_MAX_SIZE``, else :data:`DEFAULT_MAX_BYTES`.

    Attributes
    ----------
    stats : dict
        ``hits``, ``misses`` and ``corrupt`` counters for this object's lifetime.
    """

    def __init__(self, root: str | os.PathLike | None = None, max_bytes: int | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_root()
        self.stats = {"hits": 0, "misses": 0, "corrupt": 0}
        self.writable = True
        self._closed_dirs: set[Path] = set()   # shard folders this process may not write into
        self._warned: set[str] = set()
        self.max_bytes = _max_bytes_from_env() if max_bytes is None else max(0, int(max_bytes))
        self._written = 0      # bytes put since the last trim

    def _warn(self, kind: str, exc: OSError) -> None:
        """One warning per kind of problem (read, write) for this object's lifetime."""
        if kind in self._warned:
            return
        self._warned.add(kind)
        reason = exc.strerror or type(exc).__name__
        then = {"read": "going on without cached frames", "write": "going on without storing "
                "frames", "trim": "it may grow past its limit"}[kind]
        log.warning("cache %s: cannot %s (%s); %s", self.root, kind, reason, then)

    def report_corrupt(self) -> None:
        """One warning for the entries this object found unreadable (deleted, and their
        frames computed again): a cache problem slows a run down, and says so."""
        if self.stats["corrupt"]:
            log.warning("cache %s: %d unreadable entr%s; computed again", self.root,
                        self.stats["corrupt"], "y" if self.stats["corrupt"] == 1 else "ies")

    def usable(self) -> bool:
        """Create the folder and test-write a temp file there; on failure warn once and stop
        writing (reads still work where they can). Call before a run, not per frame."""
        try:
            if self.root.exists() and not self.root.is_dir():
                raise NotADirectoryError(20, "not a folder")
            self.root.mkdir(parents=True, exist_ok=True)
            probe: list[str] = []
            try:
                new_temp_file(self.root, f"{TMP_PREFIX}probe-", into=probe)
            finally:
                remove_all(probe)
        except OSError as exc:
            self.writable = False
            self._warn("write", exc)
            return False
        return True

    # ---- keys -------------------------------------------------------------------------
    @staticmethod
    def key(plate: np.ndarray, trimap: np.ndarray, *, weights_sha256: str, engine_version: str,
            params: dict, color_config: str, colorspace: str) -> str:
        """The cache key of one frame.

        Parameters
        ----------
        plate : ndarray
            The plate pixels as read (HxWxC, any dtype, in the file's own colour space):
            hashing them before colour conversion keeps the key independent of OCIO
            float noise, while ``color_config``/``colorspace`` capture the conversion.
        trimap : ndarray
            HxW trimap (0 / 0.5 / 1) as fed to the engine.
        weights_sha256 : str
            sha256 of the weights file.
        engine_version : str
            ``nuke_hdmatt.ENGINE_VERSION``.
        params : dict
            Engine parameters (patch, overlap, k, pool, precision, prior, ...). JSON-able.
        color_config : str
            Description of the OCIO config (name + file hash or path).
        colorspace : str
            The plate's resolved colour space name.

        Returns
        -------
        str
            64 hex digits.
        """
        h = hashlib.sha256()
        h.update(KEY_SCHEMA.encode() + b"\n")
        _hash_array(h, "plate", plate)
        _hash_array(h, "trimap", trimap)
        settings = {
            "weights_sha256": str(weights_sha256),
            "engine_version": str(engine_version),
            "params": params,
            "color_config": str(color_config),
            "colorspace": str(colorspace),
        }
        h.update(json.dumps(settings, sort_keys=True, default=str).encode())
        return h.hexdigest()

    @staticmethod
    def foreground_key(alpha_key: str, params: dict) -> str:
        """The key of a frame's foreground colour, stored beside its alpha.

        The alpha's key already covers the plate, the colour conversion and everything
        that decides the alpha; ``params`` are the foreground estimate's own settings.
        The entry is an ordinary one holding float32 HxWx3 scene-linear colour.
        """
        h = hashlib.sha256()
        h.update(f"{KEY_SCHEMA}:foreground\n{alpha_key}\n".encode())
        h.update(json.dumps(params, sort_keys=True, default=str).encode())
        return h.hexdigest()

    def path_for(self, key: str) -> Path:
        """The entry file for ``key`` (which may not exist)."""
        if len(key) < 3 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a cache key: {key!r}")
        return self.root / key[:2] / f"{key}{SUFFIX}"

    # ---- read ---------------------------------------------------------------------------
    def get(self, key: str) -> np.ndarray | None:
        """The cached alpha for ``key``, or ``None`` when absent or corrupt.

        Returns
        -------
        ndarray or None
            float32 HxW alpha in [0, 1]. A corrupt entry is deleted and counts as a miss.
        """
        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            self.stats["misses"] += 1
            return None
        except OSError as exc:  # another user's entry, an unreadable folder: recompute
            self.stats["misses"] += 1
            self._warn("read", exc)
            return None
        try:
            header, payload = _split_entry(data)
            if header.get("key") != key:
                raise ValueError("entry holds another key")
            if hashlib.sha256(payload).hexdigest() != header["sha256"]:
                raise ValueError("checksum mismatch")
            shape = tuple(int(s) for s in header["shape"])
            alpha = np.frombuffer(zlib.decompress(payload), dtype="<f4").reshape(shape)
        except (ValueError, KeyError, TypeError, zlib.error, struct.error):
            self.stats["corrupt"] += 1
            self.stats["misses"] += 1
            if _unlink_quiet(path):
                _remove_emptied_folders([path])
            return None
        self.stats["hits"] += 1
        try:
            os.utime(path)  # last use drives gc's least-recently-used order
        except OSError:
            pass
        return alpha.astype(np.float32, copy=True)

    def meta(self, key: str) -> dict | None:
        """The metadata stored with ``key`` (no checksum check), or ``None``."""
        try:
            header, _ = _split_entry(self.path_for(key).read_bytes())
        except (OSError, ValueError, struct.error):
            return None
        return header.get("meta", {})

    # ---- write --------------------------------------------------------------------------
    def put(self, key: str, alpha: np.ndarray, meta: dict | None = None) -> Path | None:
        """Store ``alpha`` (HxW, values in [0, 1]) under ``key``; returns the entry path, or
        None when the cache cannot be written (warned once; later puts are skipped).

        Atomic: written to a temporary file beside the entry and renamed into place. Safe
        when other processes put the same key concurrently.
        """
        if not self.writable or self.path_for(key).parent in self._closed_dirs:
            return None
        try:
            path = self._put(key, alpha, meta)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                # another user's folder without write access for us: skip it, not the cache
                self._closed_dirs.add(self.path_for(key).parent)
            else:
                self.writable = False
            self._warn("write", exc)
            return None
        try:
            self._written += path.stat().st_size
        except OSError:
            pass
        if self.max_bytes and self._written * TRIM_SHARE >= self.max_bytes:
            self.trim()
        return path

    def trim(self) -> None:
        """Keep the cache under :attr:`max_bytes` (least recently used entries go first);
        a problem is one warning, never an error. Called by :meth:`put` and at a run's end."""
        self._written = 0
        if not self.max_bytes or not self.writable:
            return
        try:
            self.gc(self.max_bytes)
        except OSError as exc:
            self._warn("trim", exc)

    def _put(self, key: str, alpha: np.ndarray, meta: dict | None) -> Path:
        alpha = np.ascontiguousarray(alpha, dtype="<f4")
        if alpha.ndim not in (2, 3):  # HxWx3: a foreground entry (see foreground_key)
            raise ValueError(f"alpha must be HxW, got shape {alpha.shape}")
        payload = zlib.compress(alpha.tobytes(), 1)
        header = json.dumps({
            "key": key,
            "shape": list(alpha.shape),
            "dtype": "float32",
            "sha256": hashlib.sha256(payload).hexdigest(),
            "created": time.time(),
            "meta": meta or {},
        }, default=str).encode()
        path = self.path_for(key)
        made: list[str] = []
        try:
            for attempt in range(3):
                self._shard(path.parent)
                try:
                    tmp = new_temp_file(path.parent, f"{TMP_PREFIX}{key[:16]}-", into=made)
                    break
                except FileNotFoundError:
                    # another process's gc removed the (then empty) folder between the calls
                    if attempt == 2:
                        raise
            # temp files are made 0600: give the entry the umask's permissions
            # (group-readable in a shared cache) like an ordinary file
            os.chmod(tmp, 0o666 & ~current_umask())
            with open(tmp, "wb") as fh:
                fh.write(MAGIC + struct.pack("<I", len(header)) + header + payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            # Ctrl-C or a full disk mid-write: leave no temp file behind
            remove_all(made)
            raise
        return path

    def _shard(self, folder: Path) -> None:
        """Make an entry's two-letter folder with the cache folder's permissions (the umask
        would make a group's shared cache read-only to all but the first writer of each)."""
        try:
            folder.mkdir()
        except FileExistsError:
            return
        except FileNotFoundError:
            self.root.mkdir(parents=True, exist_ok=True)
            folder.mkdir(exist_ok=True)
        try:
            os.chmod(folder, self.root.stat().st_mode & 0o7777)
        except OSError:
            pass    # a folder we just made is ours: only an odd file system refuses

    # ---- housekeeping -------------------------------------------------------------------
    def _files(self):
        """The entries and temp files in the cache's shard folders: names of the cache's own
        making only, so ``--cache`` naming the wrong folder (a project's) removes nothing
        of its files."""
        for sub in self._shards():
            try:
                files = list(sub.iterdir())
            except FileNotFoundError:
                continue  # another process's gc removed it, empty
            yield from (p for p in files if (_ENTRY.fullmatch(p.name) and p.name[:2] == sub.name)
                        or (_TEMP.fullmatch(p.name) and p.name[len(TMP_PREFIX):][:2] == sub.name))

    def _shards(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [sub for sub in sorted(self.root.iterdir())
                if _SHARD.fullmatch(sub.name) and sub.is_dir()]

    def entries(self) -> list[CacheEntry]:
        """All entries, least recently used first. Metadata is read from each header."""
        out = []
        for p in self._files():
            if not p.name.endswith(SUFFIX):
                continue
            try:
                st = p.stat()
                with open(p, "rb") as fh:
                    head = fh.read(12)
                    (n,) = struct.unpack("<I", head[8:12])
                    meta = _checked(json.loads(fh.read(n))).get("meta", {})
            except (OSError, ValueError, struct.error):
                meta = {"corrupt": True}
                try:
                    st = p.stat()
                except OSError:
                    continue
            out.append(CacheEntry(p.name[: -len(SUFFIX)], p, st.st_size, st.st_mtime, meta))
        out.sort(key=lambda e: e.mtime)
        return out

    def size_bytes(self) -> int:
        """Total size of the entries in bytes."""
        return sum(e.size for e in self.entries())

    def clear(self) -> int:
        """Delete every entry and temp files left by killed processes (not those a running
        process is writing); returns how many entries went."""
        removed, gone = [], self._remove_stale_temps(time.time())
        for p in list(self._files()):
            if p.name.endswith(SUFFIX) and _unlink_quiet(p):
                removed.append(p)
        _remove_emptied_folders(removed + gone)
        return len(removed)

    def _remove_stale_temps(self, now: float) -> list[Path]:
        """Temp files of killed processes (in the shards, and the root's write probes);
        returns those removed."""
        probes = list(self.root.glob(_PROBE + "*")) if self.root.is_dir() else []
        temps = [p for p in self._files() if p.name.startswith(TMP_PREFIX)]
        return [p for p in probes + temps if _remove_if_stale(p, now)]

    def gc(self, max_bytes: int) -> tuple[int, int]:
        """Delete least-recently-used entries until the cache holds at most ``max_bytes``.

        Also removes temp files left by killed processes (older than an hour).

        Returns
        -------
        (removed, freed_bytes) : tuple of int
        """
        gone = self._remove_stale_temps(time.time())
        entries = []   # (last use, size, path): no header read, a run trims often
        for p in self._files():
            if p.name.endswith(SUFFIX):
                try:
                    st = p.stat()
                except OSError:
                    continue  # removed meanwhile by another process's gc
                entries.append((st.st_mtime, st.st_size, p))
        entries.sort(key=lambda e: e[0])
        total = sum(size for _, size, _ in entries)
        removed, freed = [], 0
        for _, size, path in entries:
            if total <= max_bytes:
                break
            if not _unlink_quiet(path):
                continue  # another user's entry: theirs to remove
            total -= size
            freed += size
            removed.append(path)
        _remove_emptied_folders(removed + gone)
        return len(removed), freed


def _remove_emptied_folders(removed: list[Path]) -> None:
    """The shard folders of the files just removed, where nothing is left in them (only
    those: an empty folder of two characters may be someone else's)."""
    for folder in sorted({path.parent for path in removed if _SHARD.fullmatch(path.parent.name)}):
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty, or another process just wrote into it


def _max_bytes_from_env() -> int:
    text = os.environ.get(MAX_SIZE_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        return parse_size(text)
    except UsageError:
        log.warning("$%s=%r is not a size (500M, 50G, 0 for no limit); keeping the cache under "
                    "%s", MAX_SIZE_ENV, text, format_size(DEFAULT_MAX_BYTES))
        return DEFAULT_MAX_BYTES


def _split_entry(data: bytes) -> tuple[dict, bytes]:
    if data[:8] != MAGIC:
        raise ValueError("not a cache entry")
    (n,) = struct.unpack("<I", data[8:12])
    return _checked(json.loads(data[12:12 + n])), data[12 + n:]


def _checked(header) -> dict:
    """An entry's JSON header, or ValueError when it has another shape (the magic alone
    proves little)."""
    if not isinstance(header, dict) or not isinstance(header.get("meta", {}), dict):
        raise ValueError("not a cache entry's header")
    return header


def _remove_if_stale(path: Path, now: float) -> bool:
    """Delete a temp file older than :data:`STALE_TMP_S` (a killed process's); True when
    it went."""
    try:
        return now - path.stat().st_mtime > STALE_TMP_S and _unlink_quiet(path)
    except OSError:
        return False


def _unlink_quiet(path: Path) -> bool:
    """Remove ``path``; False when it is gone already or not ours to remove (another
    user's entry in a shared folder is left alone, never a crash)."""
    try:
        path.unlink()
    except OSError:
        return False
    return True
