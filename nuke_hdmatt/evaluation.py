"""``hdmatt eval``: our network and the classical peers on the same images and trimaps.

::

    hdmatt eval DATASET [--weights W] [--methods hdmatt,cf,knn] [--trimaps trimap1,trimap2]
                        [--images GT02,GT10 | --images validation] [--out table.md]

DATASET is laid out like alphamatting-dev: ``image/NAME.png`` (8-bit sRGB, used as the
network input space directly), ``trimap1/``, ``trimap2/`` (0 / 128 / 255) and ``alpha/``
(ground truth). Methods: ``hdmatt`` (the engine with ``--weights``, default the bundled
weights), ``cf`` (closed-form: the engine's torch solve of PyMatting's energy), ``knn``
(PyMatting KNN, when the optional PyMatting is installed), and ``LABEL=WEIGHTS`` for
more engines in the same run (e.g. ``A=model/hdmatt_a.safetensors``). Metrics are those of
:mod:`nuke_hdmatt.metrics`, over each trimap's unknown region; MSE is printed x1e-3.

:func:`evaluate` is the same loop for any ``name -> callable(image, trimap) -> alpha``
mapping (the trainer passes the model being trained).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import write_text_atomic
from .devset import case_files, check_case, list_images, load_case
from .engine.settings import InferenceSettings, check_device
from .errors import ArgumentParser, MissingFileError, OutputError, TrimapError, UsageError, run_reporting
from .metrics import METRIC_NAMES, all_metrics

__all__ = ["EvalRow", "EvalResults", "load_case", "list_images", "evaluate", "peer_methods",
           "engine_method", "format_table", "main"]

Matter = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class EvalRow:
    """Metrics of one method on one image with one trimap set (MSE unscaled)."""

    method: str
    trimap_set: str
    image: str
    sad: float
    mse: float
    grad: float
    conn: float
    seconds: float


class EvalResults:
    """Rows of an evaluation, with means per (method, trimap set)."""

    def __init__(self, rows: list[EvalRow] | None = None):
        self.rows = list(rows or [])

    def means(self) -> dict[tuple[str, str], dict[str, float]]:
        """``{(method, trimap_set): {"sad", "mse", "grad", "conn", "seconds", "n"}}``."""
        groups: dict[tuple[str, str], list[EvalRow]] = {}
        for r in self.rows:
            groups.setdefault((r.method, r.trimap_set), []).append(r)
        out = {}
        for key, rows in groups.items():
            out[key] = {m: float(np.mean([getattr(r, m) for r in rows]))
                        for m in METRIC_NAMES + ("seconds",)}
            out[key]["n"] = len(rows)
        return out

    def to_dict(self) -> dict:
        return {"rows": [asdict(r) for r in self.rows],
                "means": [{"method": m, "trimap_set": t, **v} for (m, t), v in self.means().items()]}


def evaluate(dataset_dir, methods: dict[str, Matter], images=None,
             trimap_sets=("trimap1", "trimap2"), progress=None, chatter=None) -> EvalResults:
    """Run every method on every (image, trimap set) and score it.

    Parameters
    ----------
    dataset_dir : path, laid out like alphamatting-dev
    methods : dict of name -> callable(image float32 (H, W, 3) sRGB 0-1, trimap float32
        (H, W) {0, 0.5, 1}) -> alpha (H, W) in [0, 1]. Known pixels are reset from the
        trimap before scoring (they are outside the metrics' region anyway).
    images : list of str, optional (default: all complete cases)
    trimap_sets : sequence of folder names
    progress : callable(done, total, label), optional
    chatter : text stream for what methods print (PyMatting's solver warnings); default
        stderr, ``os.devnull`` to silence. Never stdout, which carries the table.

    Returns
    -------
    EvalResults
    """
    names = list(images) if images else list_images(dataset_dir, trimap_sets)
    if not names:
        raise MissingFileError("no complete image/alpha/trimap cases", path=str(dataset_dir))
    for name in names:  # a case that would stop the run is found before the first method
        for ts in trimap_sets:
            check_case(dataset_dir, name, ts)
    results = EvalResults()
    total = len(names) * len(trimap_sets) * len(methods)
    done = 0
    for name in names:
        for ts in trimap_sets:
            image, trimap, gt = load_case(dataset_dir, name, ts)
            for label, fn in methods.items():
                start = time.perf_counter()
                try:
                    with contextlib.redirect_stdout(chatter or sys.stderr):
                        alpha = np.asarray(fn(image, trimap), dtype=np.float32)
                except ValueError as exc:
                    # PyMatting's complaint about a trimap (no F or no B region, ...).
                    raise TrimapError(f"method {label}: {exc}",
                                      path=str(Path(dataset_dir) / ts / f"{name}.png")) from None
                seconds = time.perf_counter() - start
                if alpha.shape != gt.shape:
                    raise UsageError(f"method {label} returned {alpha.shape}, expected {gt.shape}")
                alpha = np.where(trimap == 0.5, np.clip(alpha, 0, 1), trimap)
                m = all_metrics(alpha, gt, trimap)
                results.rows.append(EvalRow(label, ts, name, seconds=seconds, **m))
                done += 1
                if progress:
                    progress(done, total, f"{label} {name} {ts}")
    return results


def _pymatting_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("pymatting") is not None


def _classical(solver: str) -> Matter:
    def run(image, trimap):
        if solver == "cf":           # the engine's torch solve of PyMatting's closed-form energy
            from .engine.prior import solve
            return solve(image, trimap, "cf")
        import pymatting

        alpha = pymatting.estimate_alpha_knn(image.astype(np.float64), trimap.astype(np.float64))
        return np.clip(np.nan_to_num(alpha, nan=0.5), 0, 1).astype(np.float32)

    return run


def peer_methods() -> dict[str, Matter]:
    """The classical peers: ``cf`` (closed-form, Levin 2008: the engine's torch solve of
    PyMatting's energy) and ``knn`` (Chen 2013, PyMatting: an optional extra)."""
    return {"cf": _classical("cf"), "knn": _classical("knn")}


def engine_method(weights=None, **engine_kwargs) -> Matter:
    """Our network as a method; the engine loads on first call (torch imports lazily)."""
    state = {}

    def run(image, trimap):
        if "engine" not in state:
            from .engine import Engine

            state["engine"] = Engine.load(weights=weights, **engine_kwargs)
        return state["engine"].matte(image, trimap)

    return run


def _methods_from_args(spec: str, weights, engine_kwargs) -> dict[str, Matter]:
    peers = peer_methods()
    methods: dict[str, Matter] = {}
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        if "=" in token:
            label, path = (s.strip() for s in token.split("=", 1))
            if not os.path.exists(path):
                raise MissingFileError(f"weights for method {label} not found", path=path)
            methods[label] = engine_method(path, **engine_kwargs)
        elif token == "hdmatt":
            methods["hdmatt"] = engine_method(weights, **engine_kwargs)
        elif token in peers:
            if token == "knn" and not _pymatting_available():
                raise UsageError("--methods: knn needs PyMatting, an optional extra "
                                 "(pip install 'nuke_hdmatt[bench]')")
            methods[token] = peers[token]
        else:
            raise UsageError(f"--methods: unknown method {token!r} "
                             "(hdmatt, cf, knn or LABEL=WEIGHTS)")
    if not methods:
        raise UsageError("--methods: no method given")
    return methods


def format_table(results: EvalResults) -> str:
    """Markdown: per trimap set, one row per image and method, then the means; then a
    summary of means per method and trimap set."""
    lines = []
    means = results.means()
    trimap_sets = list(dict.fromkeys(r.trimap_set for r in results.rows))
    method_names = list(dict.fromkeys(r.method for r in results.rows))
    head = "| {} | method | SAD | MSE x1e-3 | Grad | Conn | time s |"
    rule = "|---|---|---:|---:|---:|---:|---:|"
    for ts in trimap_sets:
        lines += [f"### {ts}", "", head.format("image"), rule]
        for r in (r for r in results.rows if r.trimap_set == ts):
            lines.append(f"| {r.image} | {r.method} | {r.sad:.2f} | {r.mse * 1e3:.2f} | "
                         f"{r.grad:.2f} | {r.conn:.2f} | {r.seconds:.2f} |")
        for m in method_names:
            v = means.get((m, ts))
            if v:
                lines.append(f"| **mean ({v['n']})** | **{m}** | **{v['sad']:.2f}** | "
                             f"**{v['mse'] * 1e3:.2f}** | **{v['grad']:.2f}** | "
                             f"**{v['conn']:.2f}** | {v['seconds']:.2f} |")
        lines.append("")
    lines += ["### mean per method", "", head.format("trimaps"), rule]
    for ts in trimap_sets:
        for m in method_names:
            v = means.get((m, ts))
            if v:
                lines.append(f"| {ts} | {m} | {v['sad']:.2f} | {v['mse'] * 1e3:.2f} | "
                             f"{v['grad']:.2f} | {v['conn']:.2f} | {v['seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def _check_out(out: str, dataset, names, trimap_sets) -> None:
    """``--out`` may be written: not a file of the dataset (compared as files: a link or a
    second name of one is refused too), in a folder that takes a file."""
    from .imaging.writing import check_output_location

    if os.path.exists(out):
        for name in names:
            for ts in trimap_sets:
                for path in case_files(dataset, name, ts).values():
                    if path.exists() and os.path.samefile(out, path):
                        raise UsageError(f"--out {out}: would overwrite the dataset's {path}")
    check_output_location(out)


def main(argv=None) -> int:
    from .training import VALIDATION_IMAGES

    ap = ArgumentParser(prog="hdmatt eval",
                                 description="SAD / MSE / Grad / Conn of HDMatt and classical "
                                             "peers on a dataset laid out like alphamatting-dev.")
    ap.add_argument("dataset", metavar="DATASET")
    ap.add_argument("--weights", default=None, help="weights for method hdmatt")
    ap.add_argument("--methods", default=None,
                    help="comma list of hdmatt, cf, knn, LABEL=WEIGHTS (default hdmatt,cf,knn; "
                         "hdmatt,cf without PyMatting)")
    ap.add_argument("--trimaps", default="trimap1,trimap2", help="trimap folders")
    ap.add_argument("--images", default=None,
                    help="comma list of names, or 'validation' for the held-out split "
                         f"({','.join(VALIDATION_IMAGES)}); default all")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--patch", type=int, default=320)
    ap.add_argument("--out", default=None, help="also write the markdown table here")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)

    def body():
        if not Path(args.dataset).is_dir():
            raise MissingFileError("dataset folder not found", path=args.dataset)
        trimap_sets = [t.strip() for t in args.trimaps.split(",") if t.strip()]
        for t in trimap_sets:
            if not (Path(args.dataset) / t).is_dir():
                raise MissingFileError(f"no trimap folder {t!r}", path=args.dataset)
        if args.images == "validation":
            images = list(VALIDATION_IMAGES)
        elif args.images:
            images = [n.strip() for n in args.images.split(",") if n.strip()]
        else:
            images = None
        if args.weights and not os.path.exists(args.weights):
            raise MissingFileError("weights file not found", path=args.weights)
        try:
            check_device(args.device)
        except ValueError as exc:
            raise UsageError(f"--device: {exc}") from None
        try:
            InferenceSettings(patch=args.patch)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if args.out:
            _check_out(args.out, args.dataset, images or list_images(args.dataset, trimap_sets),
                       trimap_sets)
        spec = args.methods or ("hdmatt,cf,knn" if _pymatting_available() else "hdmatt,cf")
        methods = _methods_from_args(spec, args.weights,
                                     {"device": args.device, "patch": args.patch})

        def progress(done, total, label):
            if not args.quiet:
                print(f"  [{done}/{total}] {label}", file=sys.stderr, flush=True)

        with open(os.devnull, "w") as devnull:
            results = evaluate(args.dataset, methods, images, trimap_sets, progress,
                               chatter=devnull if args.quiet else None)
        table = format_table(results)
        sys.stdout.write(table)
        if args.out:
            try:
                write_text_atomic(args.out, table)
            except OSError as exc:
                raise OutputError(f"cannot write: {exc.strerror or exc}", path=args.out) from None

    return run_reporting("hdmatt", body)


if __name__ == "__main__":
    sys.exit(main())
