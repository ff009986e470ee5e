"""Per-frame alpha cache: keys, hits, invalidation, corruption, concurrency, gc."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nuke_hdmatt.errors import UsageError
from nuke_hdmatt.shot.cache import FrameCache, default_cache_root, parse_size

SETTINGS = dict(weights_sha256="ab" * 32, engine_version="0.1.0",
                params={"patch": 320, "overlap": 32, "k": 3, "pool": 30},
                color_config="builtin cg-config", colorspace="ACEScg")


def _frame(seed=0, h=24, w=32):
    rng = np.random.default_rng(seed)
    plate = rng.random((h, w, 3), dtype=np.float32)
    trimap = np.full((h, w), 0.5, np.float32)
    trimap[:, :4] = 0.0
    trimap[:, -4:] = 1.0
    alpha = rng.random((h, w), dtype=np.float32)
    return plate, trimap, alpha


def test_key_changes_with_any_input_or_setting():
    plate, trimap, _ = _frame()
    base = FrameCache.key(plate, trimap, **SETTINGS)
    assert base == FrameCache.key(plate.copy(), trimap.copy(), **SETTINGS)
    one_pixel = plate.copy()
    one_pixel[3, 5, 1] = np.nextafter(one_pixel[3, 5, 1], 2)
    t2 = trimap.copy()
    t2[0, 10] = 1.0
    changed = [
        FrameCache.key(one_pixel, trimap, **SETTINGS),
        FrameCache.key(plate, t2, **SETTINGS),
        FrameCache.key(plate.reshape(32, 24, 3), trimap, **SETTINGS),
    ]
    for name, value in [("weights_sha256", "cd" * 32), ("engine_version", "0.2.0"),
                        ("params", {**SETTINGS["params"], "k": 5}),
                        ("color_config", "studio.ocio"), ("colorspace", "sRGB")]:
        changed.append(FrameCache.key(plate, trimap, **{**SETTINGS, name: value}))
    assert len(set(changed)) == len(changed) and base not in changed


def test_put_get_round_trip_miss_and_meta(tmp_path):
    cache = FrameCache(tmp_path / "c")
    plate, trimap, alpha = _frame()
    key = FrameCache.key(plate, trimap, **SETTINGS)
    assert cache.get(key) is None
    cache.put(key, alpha, {"frame": 1001, "plate": "p.1001.exr"})
    got = cache.get(key)
    assert got.dtype == np.float32 and np.array_equal(got, alpha)
    assert cache.stats == {"hits": 1, "misses": 1, "corrupt": 0}
    assert cache.meta(key)["frame"] == 1001
    [entry] = cache.entries()
    assert entry.key == key and entry.size == os.path.getsize(entry.path)
    assert not [p for p in entry.path.parent.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("damage", ["flip_payload", "truncate", "garbage", "header_a_list",
                                    "meta_a_list"])
def test_corrupt_entry_detected_deleted_and_recomputed(tmp_path, damage):
    import json
    import struct
    cache = FrameCache(tmp_path)
    plate, trimap, alpha = _frame(1)
    key = FrameCache.key(plate, trimap, **SETTINGS)
    path = cache.put(key, alpha)
    data = bytearray(path.read_bytes())
    if damage == "flip_payload":
        data[-5] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"\x00" * 40)
    else:  # the magic and a JSON header of the wrong shape
        (n,) = struct.unpack("<I", data[8:12])
        header = json.loads(data[12:12 + n])
        header = [header] if damage == "header_a_list" else {**header, "meta": [1]}
        text = json.dumps(header).encode()
        data = data[:8] + struct.pack("<I", len(text)) + text + data[12 + n:]
    path.write_bytes(bytes(data))
    [entry] = cache.entries()            # listed (cache ls), not a crash
    assert entry.meta == {"corrupt": True} or damage in ("flip_payload", "truncate")
    assert cache.meta(key) is None or damage in ("flip_payload", "truncate")
    assert cache.get(key) is None
    assert cache.stats["corrupt"] == 1 and not path.exists()
    cache.put(key, alpha)
    assert np.array_equal(cache.get(key), alpha)


def test_unreadable_entries_are_one_warning_at_the_end_of_a_run(tmp_path, caplog):
    cache = FrameCache(tmp_path)
    plate, trimap, alpha = _frame(1)
    key = FrameCache.key(plate, trimap, **SETTINGS)
    cache.put(key, alpha).write_bytes(b"\x00" * 40)
    cache.report_corrupt()
    assert caplog.records == []          # nothing found unreadable yet
    assert cache.get(key) is None
    cache.report_corrupt()
    [record] = caplog.records
    assert record.levelname == "WARNING" and "1 unreadable entry; computed again" in \
        record.getMessage()


def test_a_cache_this_process_cannot_write_still_serves_its_frames(tmp_path, monkeypatch,
                                                                   caplog):
    """A farm's cache mounted read-only on workstations: one warning, no writes, but every
    frame it holds is read (it was dropped, and the frames computed again)."""
    from nuke_hdmatt.shot import cache as cache_module
    from nuke_hdmatt.shot.workflow import RunSettings, open_cache
    plate, trimap, alpha = _frame(1)
    key = FrameCache.key(plate, trimap, **SETTINGS)
    FrameCache(tmp_path).put(key, alpha)

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")
    monkeypatch.setattr(cache_module, "new_temp_file", read_only)
    cache = open_cache(RunSettings(engine={}, cache=str(tmp_path)))
    assert cache is not None and not cache.writable
    assert np.array_equal(cache.get(key), alpha)
    assert cache.put(key + "0", alpha) is None
    assert ["Read-only file system" in r.getMessage() for r in caplog.records] == [True]
    (tmp_path / "a_file").write_text("x")          # no folder to read: no cache
    assert open_cache(RunSettings(engine={}, cache=str(tmp_path / "a_file" / "c"))) is None


def test_a_cache_folder_that_cannot_even_be_looked_at_is_no_cache(tmp_path, monkeypatch, caplog):
    """A folder inside one this user may not enter: every stat raises PermissionError."""
    from pathlib import Path

    from nuke_hdmatt.shot.workflow import RunSettings, open_cache

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")
    for name in ("exists", "is_dir", "mkdir"):
        monkeypatch.setattr(Path, name, denied)
    assert open_cache(RunSettings(engine={}, cache=str(tmp_path / "locked" / "c"))) is None
    assert [r.getMessage() for r in caplog.records if "Permission denied" in r.getMessage()]


def test_cache_commands_refuse_an_empty_folder_name_and_say_what_they_could_not_remove(
        tmp_path, monkeypatch, capsys):
    """``--cache ""`` (an unset shell variable) was the current folder: clear emptied it."""
    from nuke_hdmatt import cli
    from nuke_hdmatt.shot import cache as cache_module
    monkeypatch.chdir(tmp_path)
    keep = tmp_path / "ab" / "render.alpha"
    keep.parent.mkdir()
    keep.write_bytes(b"a render, not a cache entry")
    assert cli.main(["cache", "clear", "--cache", ""]) == 2
    assert "--cache is empty" in capsys.readouterr().err and keep.exists()
    plate, trimap, alpha = _frame(1)
    FrameCache(tmp_path / "c").put(FrameCache.key(plate, trimap, **SETTINGS), alpha)
    monkeypatch.setattr(cache_module, "_unlink_quiet", lambda path: False)  # no permission
    assert cli.main(["cache", "clear", "--cache", str(tmp_path / "c")]) == 1
    assert "1 entries could not be removed" in capsys.readouterr().err
    assert cli.main(["cache", "gc", "--cache", str(tmp_path / "c"), "--max-size", "1"]) == 1
    assert "still over" in capsys.readouterr().err


def test_clear_and_gc_least_recently_used(tmp_path):
    cache = FrameCache(tmp_path)
    keys = []
    for i in range(4):
        plate, trimap, alpha = _frame(i)
        key = FrameCache.key(plate, trimap, **SETTINGS)
        path = cache.put(key, alpha)
        os.utime(path, (1000 + i, 1000 + i))
        keys.append(key)
    cache.get(keys[0])  # touching makes entry 0 the most recently used
    sizes = {e.key: e.size for e in cache.entries()}
    budget = sizes[keys[0]] + sizes[keys[3]]
    removed, freed = cache.gc(budget)
    assert removed == 2 and freed == sizes[keys[1]] + sizes[keys[2]]
    assert {e.key for e in cache.entries()} == {keys[0], keys[3]}
    assert cache.clear() == 2 and cache.entries() == []


def test_clear_leaves_a_temp_file_a_running_put_is_writing(tmp_path):
    cache = FrameCache(tmp_path)
    plate, trimap, alpha = _frame(0)
    path = cache.put(FrameCache.key(plate, trimap, **SETTINGS), alpha)
    # named as put names them: the key's first 16 characters
    live, stale = (path.parent / f".tmp-{path.name[:16]}-{n}" for n in ("live", "stale"))
    live.write_bytes(b"x")
    stale.write_bytes(b"x")
    os.utime(stale, (1000, 1000))
    assert cache.clear() == 1
    assert live.exists() and not stale.exists() and not path.exists()


def test_a_cache_command_given_the_wrong_folder_removes_none_of_its_files(tmp_path):
    """``hdmatt cache --cache <a project folder> clear`` removed any ``*.alpha`` file in any
    folder of two characters, and the emptied folders."""
    project = {"v1/hero_matte.alpha": b"a matte", "ab/notes.alpha": b"notes",
               "ab/.tmp-old": b"x", ("0" * 64) + ".alpha": b"at the top"}
    for name, data in project.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
        os.utime(tmp_path / name, (1000, 1000))
    (tmp_path / "cd").mkdir()  # an empty folder of the project's
    cache = FrameCache(tmp_path)
    plate, trimap, alpha = _frame(0)
    entry = cache.put(FrameCache.key(plate, trimap, **SETTINGS), alpha)
    assert [e.path for e in cache.entries()] == [entry]
    size = entry.stat().st_size
    assert cache.gc(0) == (1, size) and not entry.exists()
    cache.put(FrameCache.key(plate, trimap, **SETTINGS), alpha)
    assert cache.clear() == 1 and not entry.exists() and not entry.parent.exists()
    assert all((tmp_path / name).read_bytes() == data for name, data in project.items())
    assert (tmp_path / "cd").is_dir()


def test_clear_removes_the_shards_it_empties_and_a_killed_runs_write_probe(tmp_path):
    """Only the shards of entries clear removed went: one emptied of a killed run's temp
    file, or by get() dropping a corrupt entry, stayed for ever; so did a write probe."""
    cache = FrameCache(tmp_path)
    plate, trimap, alpha = _frame(0)
    key = FrameCache.key(plate, trimap, **SETTINGS)
    corrupt = cache.put(key, alpha)
    corrupt.write_bytes(corrupt.read_bytes()[:-1])
    assert cache.get(key) is None and not corrupt.parent.exists()
    (tmp_path / "ab").mkdir()
    stale = tmp_path / "ab" / f".tmp-ab{'0' * 14}-x1y2z3w4"
    probe = tmp_path / ".tmp-probe-q1w2e3r4"
    for path in (stale, probe):
        path.write_bytes(b"x")
        os.utime(path, (1000, 1000))
    assert cache.clear() == 0
    assert sorted(os.listdir(tmp_path)) == []


def test_a_shared_caches_folders_keep_the_cache_folders_permissions(tmp_path):
    root = tmp_path / "shared"
    root.mkdir()
    os.chmod(root, 0o2775)           # a group's cache: group-writable, group inherited
    old = os.umask(0o022)            # the first writer's umask would make folders 0755
    try:
        plate, trimap, alpha = _frame(0)
        path = FrameCache(root).put(FrameCache.key(plate, trimap, **SETTINGS), alpha)
    finally:
        os.umask(old)
    assert os.stat(path.parent).st_mode & 0o7777 == 0o2775
    assert os.stat(path).st_mode & 0o777 == 0o644      # entries: as an ordinary file


def test_a_folder_of_the_cache_this_user_may_not_write_costs_only_its_own_frames(
        tmp_path, monkeypatch, caplog):
    from nuke_hdmatt.shot import cache as cache_module
    real = cache_module.new_temp_file
    cache = FrameCache(tmp_path)
    frames = [_frame(i) for i in range(6)]
    keys = [FrameCache.key(p, t, **SETTINGS) for p, t, _ in frames]
    closed = cache.path_for(keys[0]).parent

    def new_temp_file(folder, *args, **kwargs):  # another user's folder, 0755 (as root: faked)
        if os.path.samefile(folder, closed):
            raise PermissionError(13, "Permission denied")
        return real(folder, *args, **kwargs)
    monkeypatch.setattr(cache_module, "new_temp_file", new_temp_file)
    stored = [cache.put(k, a) for k, (_, _, a) in zip(keys, frames)]
    assert stored[0] is None and cache.writable
    assert all(p is not None for k, p in zip(keys, stored) if cache.path_for(k).parent != closed)
    assert sum("Permission denied" in r.getMessage() for r in caplog.records) == 1


def test_put_keeps_the_cache_under_its_limit_dropping_the_least_recently_used(tmp_path):
    """Without ``hdmatt cache gc``: a workstation's cache stays under its limit as a run
    writes, the entry just read and the one just written kept."""
    cache = FrameCache(tmp_path, max_bytes=0)            # no limit while the stock is laid
    keys = []
    for i in range(5):
        plate, trimap, alpha = _frame(i)
        keys.append(FrameCache.key(plate, trimap, **SETTINGS))
        os.utime(cache.put(keys[-1], alpha), (1000 + i, 1000 + i))
    size = max(e.size for e in cache.entries())
    assert len(cache.entries()) == 5
    cache.max_bytes = 3 * size + size // 2
    assert cache.get(keys[0]) is not None               # now the most recently used
    plate, trimap, alpha = _frame(9)
    new = FrameCache.key(plate, trimap, **SETTINGS)
    cache.put(new, alpha)                                # 1/20 of the limit written: trims
    assert {e.key for e in cache.entries()} == {keys[0], keys[4], new}
    assert cache.size_bytes() <= cache.max_bytes


def test_the_limit_comes_from_the_environment(monkeypatch, tmp_path, caplog):
    from nuke_hdmatt.shot.cache import DEFAULT_MAX_BYTES
    monkeypatch.delenv("HDMATT_CACHE_MAX_SIZE", raising=False)
    assert FrameCache(tmp_path).max_bytes == DEFAULT_MAX_BYTES == 50 * 2 ** 30
    monkeypatch.setenv("HDMATT_CACHE_MAX_SIZE", "1.5G")
    assert FrameCache(tmp_path).max_bytes == int(1.5 * 2 ** 30)
    monkeypatch.setenv("HDMATT_CACHE_MAX_SIZE", "0")      # no limit: put never trims
    unlimited = FrameCache(tmp_path)
    for i in range(3):
        plate, trimap, alpha = _frame(i)
        unlimited.put(FrameCache.key(plate, trimap, **SETTINGS), alpha)
    assert unlimited.max_bytes == 0 and len(unlimited.entries()) == 3
    monkeypatch.setenv("HDMATT_CACHE_MAX_SIZE", "lots")   # a cache setting never stops a run
    with caplog.at_level("WARNING"):
        assert FrameCache(tmp_path).max_bytes == DEFAULT_MAX_BYTES
    assert "HDMATT_CACHE_MAX_SIZE='lots' is not a size" in caplog.text


def test_default_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HDMATT_CACHE", str(tmp_path / "a"))
    assert default_cache_root() == tmp_path / "a"
    monkeypatch.delenv("HDMATT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_root() == tmp_path / "x" / "hdmatt"
    assert FrameCache().root == tmp_path / "x" / "hdmatt"


def test_parse_size():
    assert parse_size("10G") == 10 * 1024 ** 3
    assert parse_size("500M") == 500 * 1024 ** 2
    assert parse_size("1.5k") == 1536
    assert parse_size("4096") == 4096
    with pytest.raises(UsageError):
        parse_size("lots")


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e400", "1e308G"])
def test_a_size_that_is_no_number_of_bytes_is_refused_and_the_limit_falls_back(
        text, monkeypatch, tmp_path, caplog):
    """float() takes these; int() of them raised ValueError/OverflowError, an internal
    error of every run (the limit is read from the environment by every cache)."""
    from nuke_hdmatt.shot.cache import DEFAULT_MAX_BYTES
    with pytest.raises(UsageError, match="cannot parse size"):
        parse_size(text)
    monkeypatch.setenv("HDMATT_CACHE_MAX_SIZE", text)
    with caplog.at_level("WARNING"):
        assert FrameCache(tmp_path).max_bytes == DEFAULT_MAX_BYTES
    assert len(caplog.records) == 1 and "is not a size" in caplog.text


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from nuke_hdmatt.shot.cache import FrameCache
    root, key, value = sys.argv[1], sys.argv[2], float(sys.argv[3])
    cache = FrameCache(root)
    alpha = np.full((256, 256), value, np.float32)
    alpha[::7] = np.linspace(0, 1, 256, dtype=np.float32)  # incompressible enough to be slow
    for _ in range(60):
        cache.put(key, alpha)
        got = cache.get(key)
        assert got is not None, "reader saw a torn or missing entry"
""")


def test_two_processes_writing_the_same_key_never_tear(tmp_path):
    key = "f" * 64
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), key, v],
                              stderr=subprocess.PIPE, text=True) for v in ("0.25", "0.75")]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    cache = FrameCache(tmp_path)
    got = cache.get(key)
    assert got is not None and cache.stats["corrupt"] == 0
    assert got[1, 0] in (np.float32(0.25), np.float32(0.75))
    assert [p.name for p in (tmp_path / "ff").iterdir()] == [f"{key}.alpha"]


TRIMMER = textwrap.dedent("""
    import logging, sys, numpy as np
    from nuke_hdmatt.shot.cache import FrameCache
    logging.basicConfig(level=logging.WARNING)
    root, tag, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cache = FrameCache(root, max_bytes=limit)
    rng = np.random.default_rng(int(tag, 16))
    for i in range(40):
        key = f"{tag}{i:02x}".ljust(64, "0")
        cache.put(key, rng.random((64, 64), dtype=np.float32))
        assert cache.writable, "a trim made the cache give up"
    cache.trim()
""")


def test_two_processes_trimming_one_cache_neither_fails_nor_leaves_temp_files(tmp_path):
    """Two farm tasks sharing a cache folder, each writing and trimming to a small limit:
    the other's deletions (files, emptied folders) are no problem and nothing warns."""
    limit = 6 * 16_000
    procs = [subprocess.Popen([sys.executable, "-c", TRIMMER, str(tmp_path), tag, str(limit)],
                              stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "WARNING" not in err, err
    cache = FrameCache(tmp_path, max_bytes=0)
    sizes = [e.size for e in cache.entries()]
    assert 0 < len(sizes) and sum(sizes) <= limit + max(sizes)   # the last writer's entry
    assert not [p for p in tmp_path.rglob(".tmp-*")]
