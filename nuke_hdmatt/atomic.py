"""Atomic writes for every file this project writes (alphas, weights, checkpoints, cached
data, job templates, reports, the Nuke hook): write a temp file in the target's folder, then
rename, so a killed run never leaves a half-written file that a later run would trust, and a
failed run never clobbers the previous file. Otherwise as ``open(path, "w")``: a symlink is
written through (its target is what the user keeps: dotfiles, a studio file), an existing
file keeps its permissions and a new one gets the umask's, and an existing file this process
may not write (``chmod a-w``: a locked, approved frame) is refused, not replaced (a rename
needs only the folder's permission).

Temp files are named ``.<stem>.<random><suffix>`` beside the target, which is how
``imaging.writing.remove_stale_temps`` and ``nuke.engine_call.remove_partial_outputs``
recognise what a killed run left.

Standard library only at import time (the Nuke side and ``install.py`` use it); numpy and
OpenImageIO are imported by the functions that need them."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

__all__ = ["atomic_path", "current_umask", "new_temp_file", "remove_all", "temp_beside",
           "save_npz_atomic", "save_npy_atomic", "write_png_atomic", "write_text_atomic"]

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"  # as mkstemp's: what cleaners match
_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def new_temp_file(folder, prefix: str, suffix: str = "", *, into: list) -> str:
    """A new empty file (mode 0600) in ``folder``, named ``<prefix><8 random><suffix>``.

    ``into``: the caller's list of its temp files, for its cleanup (:func:`remove_all`). The
    name goes in before the file is made, so a Ctrl-C, a SIGTERM or a failure at any
    instant, this call's return included, finds it there (mkstemp's name is only known once
    it returns: a stop in between left the file behind).

    Raises
    ------
    OSError
        The folder does not take files.
    """
    for _ in range(100):
        token = "".join(secrets.choice(_NAME_CHARS) for _ in range(8))
        tmp = os.path.join(folder, f"{prefix}{token}{suffix}")
        into.append(tmp)
        try:
            os.close(os.open(tmp, _CREATE, 0o600))
            return tmp
        except FileExistsError:
            into.remove(tmp)  # another file's name: not ours to remove
    raise FileExistsError(errno.EEXIST, "no unused temp file name", str(folder))


def temp_beside(path, suffix: str = ".tmp", *, into: list) -> str:
    """A new empty temp file in ``path``'s folder, named ``.<stem>.<8 random><suffix>``
    (:func:`new_temp_file`)."""
    path = Path(path)
    return new_temp_file(path.parent, f".{path.stem}.", suffix, into=into)


def remove_all(paths: list) -> None:
    """Remove the temp files of a ``into`` list (those already gone or renamed: nothing)."""
    for name in paths:
        with contextlib.suppress(OSError):
            os.unlink(name)


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp", *, fsync: bool = False, make_folder: bool = True):
    """Yield a temp path beside ``path``; on success rename it onto ``path``, on any
    error remove it and re-raise.

    ``fsync`` flushes the temp file to disk before the rename (outputs others read at once:
    a farm's alphas); ``make_folder`` creates missing parent folders.
    """
    # ".." taken lexically, as the temp file is placed and every check of the output's
    # folder reads it (the kernel would fail the rename through a missing "sub/..")
    path = Path(os.path.abspath(path))
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(errno.EACCES, "read-only; not replaced", str(path))
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    made: list[str] = []
    try:
        tmp = temp_beside(path, suffix, into=made)
        yield tmp
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.chmod(tmp, _final_mode(path))
        os.replace(tmp, path)
    except BaseException:
        remove_all(made)
        raise


def _final_mode(path: Path) -> int:
    # temp files are made 0600; the final file gets the permissions a plain open() would give
    # it (the existing file's, else the umask's), so the farm and other users can read it
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process's umask, read without setting it where the system says it (Linux): setting
    it to read it would, for that instant, give files other threads create (Nuke runs many)
    the wrong permissions."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_npz_atomic(path, compressed: bool = True, **arrays) -> None:
    """``np.savez[_compressed]`` to ``path`` atomically."""
    import numpy as np
    with atomic_path(path, ".npz") as tmp, open(tmp, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)


def save_npy_atomic(path, array) -> None:
    """``np.save`` to ``path`` atomically."""
    import numpy as np
    with atomic_path(path, ".npy") as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def write_text_atomic(path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_path(path, ".txt") as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_png_atomic(path, pixels) -> None:
    """Write (H, W) or (H, W, C) float 0-1 pixels as an 8-bit PNG atomically (OpenImageIO)."""
    import numpy as np
    import OpenImageIO as oiio

    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    pixels = np.ascontiguousarray(np.clip(pixels, 0.0, 1.0))
    with atomic_path(path, ".png") as tmp:
        out = oiio.ImageOutput.create(tmp)
        if out is None:
            raise OSError(f"{path}: {oiio.geterror()}")
        spec = oiio.ImageSpec(pixels.shape[1], pixels.shape[0], pixels.shape[2], "uint8")
        ok = out.open(tmp, spec) and out.write_image(pixels)
        err = out.geterror()
        out.close()
        if not ok:
            raise OSError(f"{path}: {err}")
