"""Where benchmark results go and how they are labelled: machine description, markdown
tables, atomic writes into ``benchmarks/results/`` and sections of ``benchmarks/RESULTS.md``.

Every table written here carries the date, machine (CPU model, cores, memory), device and
torch version of the run that produced it, so numbers from different machines are never
mixed up.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path

from nuke_hdmatt.atomic import atomic_path, write_text_atomic

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"

_HEADER = """# Benchmark results

Written by the scripts in this folder (see `README.md`); each section is replaced when its
script runs again. Numbers are measured, never edited by hand. Quick-mode sections are
smoke-sized runs and say so.
"""


MEMORY_NOTE = ("Each method runs in its own process; peak RSS = what was resident at the start "
               "of the run (inputs, torch, numba) + the method's working set (the RSS high-water "
               "mark is reset after a warm-up call)")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _meminfo_gib(field: str) -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def memory_gib() -> float | None:
    return _meminfo_gib("MemTotal")


def available_gib() -> float | None:
    """MemAvailable now (other users of the machine count against what we may use)."""
    return _meminfo_gib("MemAvailable")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info(threads: int | None = None, device: str = "cpu") -> dict:
    """What a reader needs to judge a timing: when, where, with what."""
    import torch
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib() or 0, 1),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "device": device if device != "cuda" else f"cuda ({torch.cuda.get_device_name(0)})",
        "torch": torch.__version__,
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "commit": git_commit(),
    }
    return info


def machine_line(info: dict) -> str:
    return (f"{info['date']}; machine: {info['cpu']}, {info['cores']} cores, "
            f"{info['memory_gib']} GiB RAM (1-min load {info['load_avg_1min']} at start: the "
            f"machine is shared); device: {info['device']}; torch {info['torch']} with "
            f"{info['torch_threads']} thread(s); commit {info['commit']}")


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def save_figure(fig, path: Path) -> None:
    with atomic_path(path, Path(path).suffix) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")


def update_results_section(name: str, markdown: str, results_md: Path = RESULTS_MD) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md, leaving the others intact."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}\n"
    text = results_md.read_text() if results_md.exists() else _HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block
    write_text_atomic(results_md, text)


def publish(script: str, quick: bool, text: str, section: str | None = None) -> None:
    """Write ``results/<script>[_quick].md``, replace its RESULTS.md section, print it."""
    write_text_atomic(results_path(script, quick, ".md"), text)
    update_results_section(section or script + ("_quick" if quick else ""), text)
    print(text)


def results_path(script: str, quick: bool, suffix: str) -> Path:
    """``results/<script>[_quick]<suffix>``: quick runs never overwrite full-run files."""
    return RESULTS_DIR / f"{script}{'_quick' if quick else ''}{suffix}"
