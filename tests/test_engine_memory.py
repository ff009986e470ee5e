"""Out of memory is the machine's state: one retry on a GPU, then a frame that fails with a
line saying what ran out and what to change; never an internal error."""

import subprocess
import sys

import pytest
import torch

from cli_fixtures import FAST, exr_sequence, hdmatt_env
from nuke_hdmatt.engine import memory
from nuke_hdmatt.errors import OutOfMemory

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def _failing(*errors, result="alpha"):
    calls = []

    def run():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result
    return run, calls


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("out of memory"),
    MemoryError("Unable to allocate 72.8 TiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory"),
])
def test_host_memory_is_one_try_and_a_line_naming_ram(error):
    run, calls = _failing(error)
    with pytest.raises(OutOfMemory, match=r"out of memory \(RAM\) for a 64x48 frame: run fewer"):
        memory.guarded(CPU, "a 64x48 frame", run)
    assert len(calls) == 1


def test_other_runtime_errors_are_not_taken_for_memory():
    run, _ = _failing(RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        memory.guarded(CPU, "a frame", run)


def test_a_gpu_frees_its_cache_and_retries_once(monkeypatch):
    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1.5 * 2 ** 30, 80 * 2 ** 30))
    run, calls = _failing(torch.OutOfMemoryError("CUDA out of memory"))
    assert memory.guarded(CUDA, "a frame", run) == "alpha"          # the retry got through
    assert len(calls) == 2 and len(emptied) == 1
    run, calls = _failing(*[torch.OutOfMemoryError("CUDA out of memory")] * 2)
    with pytest.raises(OutOfMemory, match=r"out of GPU memory on cuda:0 \(1\.5 of 80\.0 GiB "
                                          r"free\) for a frame, also after a retry: .*--device cpu"):
        memory.guarded(CUDA, "a frame", run)
    assert len(calls) == 2


def test_a_frame_out_of_memory_fails_alone_and_the_shot_goes_on(tmp_path):
    """The engine running out of memory on frame 2 of 3: frames 1 and 3 are written, frame 2
    is listed with the reason, exit 1 (not an internal error)."""
    plate, trimap = exr_sequence(tmp_path / "in", [1, 2, 3])
    code = (
        "import sys\n"
        "from nuke_hdmatt.engine.runner import Engine\n"
        "real, seen = Engine._matte, []\n"
        "def flaky(self, image, *a):\n"
        "    seen.append(1)\n"
        "    if len(seen) == 2:\n"
        "        raise MemoryError('Unable to allocate 9 GiB')\n"
        "    return real(self, image, *a)\n"
        "Engine._matte = flaky\n"
        "from nuke_hdmatt.cli import main\n"
        f"sys.exit(main(['matte', {plate!r}, {trimap!r}, '-o', 'out/a.####.exr', "
        f"'--no-cache', '--quiet', *{FAST!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=hdmatt_env(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    # listed once under its frame, not "frame 2: frame 2: ..."
    assert "hdmatt:   frame 2: out of memory (RAM) for a 48x48 frame: run fewer" in proc.stderr, \
        proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.0001.exr", "a.0003.exr"]
