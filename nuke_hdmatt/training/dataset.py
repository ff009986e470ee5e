"""Pre-generated sample folders and the torch ``Dataset`` wrappers (the only torch import
in data synthesis).

Variant D needs a closed-form prior per training crop, and the solve costs more than a
training step, so samples are generated ahead of time::

    python -m nuke_hdmatt.training.dataset build --out runs/data192 --n 4000 --patch 192 \\
        --seed 1 [--holdout GT02,GT10,GT18,GT24,GT27] [--context 4] [--crops 192,288,384] \\
        [--no-prior] [--per-scene 4] [--shard 1/2]

Sample ``i`` depends only on (seed, per_scene, i), so the build is resumable (existing files
are skipped) and can be split across processes with ``--shard K/M``. ``--per-scene``
cuts several samples (different crop side and windows) from one composite scene, sharing its
closed-form solve. Each sample is
``DIR/NNNNNNN.npz`` (written atomically) holding, patch axis first (index 0 = query):

- ``image``, ``fg``, ``bg``: uint8 (P+1, 3, p, p), sRGB-encoded
- ``trimap``: uint8 (P+1, p, p) in {0, 128, 255}
- ``alpha``, ``prior``: float16 (P+1, p, p) in [0, 1] (``prior`` absent with --no-prior)
- ``boxes``: int32 (P+1, 3) window (y, x, side) in the scene; ``names``: source names

``DIR/manifest.json`` records the synthesis configuration and seed; building into a folder
made with another configuration is refused.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..atomic import save_npz_atomic, write_text_atomic
from ..errors import UsageError, run_reporting
from . import VALIDATION_IMAGES, shared_data_dir
from .synthesis import SampleSynthesizer, SynthesisConfig

__all__ = ["build", "manifest_prior_solver", "generate_sample", "encode_sample", "decode_sample",
           "load_sample", "sample_paths",
           "PatchFolderDataset", "SyntheticDataset", "FORMAT", "main"]

FORMAT = "hdmatt-patches/1"
MANIFEST = "manifest.json"


def encode_sample(sample: dict) -> dict:
    """Float sample (from :class:`SampleSynthesizer`) -> compact arrays for the ``.npz``."""
    out = {}
    for k in ("image", "fg", "bg"):
        out[k] = np.round(np.clip(sample[k], 0, 1) * 255).astype(np.uint8)
    out["trimap"] = np.round(sample["trimap"] * 255).astype(np.uint8)
    out["trimap"][out["trimap"] == 127] = 128
    out["alpha"] = sample["alpha"].astype(np.float16)
    if "prior" in sample:
        out["prior"] = sample["prior"].astype(np.float16)
    out["boxes"] = np.asarray(sample["boxes"], np.int32)
    out["names"] = np.array(sample.get("names", []), dtype=str)
    return out


def decode_sample(arrays) -> dict:
    """Stored arrays -> float32 sample: image/fg/bg (P+1, 3, p, p) sRGB 0-1, trimap
    (P+1, p, p) {0, 0.5, 1}, alpha and prior (P+1, p, p) 0-1, boxes int32, names list."""
    out = {k: arrays[k].astype(np.float32) / 255.0 for k in ("image", "fg", "bg")}
    t = arrays["trimap"]
    out["trimap"] = np.where(t == 128, 0.5, t / 255.0).astype(np.float32)
    out["alpha"] = arrays["alpha"].astype(np.float32)
    if "prior" in arrays:
        out["prior"] = arrays["prior"].astype(np.float32)
    out["boxes"] = np.asarray(arrays["boxes"], np.int32)
    out["names"] = [str(n) for n in arrays["names"]] if "names" in arrays else []
    return out


def load_sample(path) -> dict:
    """Read one ``.npz`` sample as float32 arrays (see :func:`decode_sample`)."""
    with np.load(path) as z:
        return decode_sample({k: z[k] for k in z.files})


def sample_paths(folder) -> list[Path]:
    """Sample files of a built folder, in index order."""
    return sorted(Path(folder).glob("[0-9]" * 7 + ".npz"))


def manifest_prior_solver(folder) -> str | None:
    """The prior solver a sample folder's manifest names (written before its first sample),
    or None without a manifest. Folders built before --prior-solver existed hold
    closed-form priors."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("config", {}).get("prior_solver", "cf")


def _check_manifest(out: Path, manifest: dict) -> None:
    path = out / MANIFEST
    if out.exists() and not out.is_dir():
        raise UsageError("--out: is a file, not a folder", path=str(out))
    if path.exists():
        old = json.loads(path.read_text())
        try:
            # Settings added since the folder was made compare as what they were before
            # they existed (SynthesisConfig.LEGACY), else as their defaults.
            old_config = SynthesisConfig.from_dict(
                {**SynthesisConfig.LEGACY, **old.get("config", {})}).to_dict()
        except (UsageError, TypeError):
            old_config = old.get("config")
        new_config = manifest["config"]
        differ = sorted(k for k in set(old_config or {}) | set(new_config)
                        if (old_config or {}).get(k) != new_config.get(k))
        # samples are numbered by (seed, scene, crop): another per-scene count would
        # give the same scenes again under new numbers
        differ += [k for k in ("seed", "per_scene") if old.get(k, 1) != manifest[k]]
        if differ:
            raise UsageError(f"folder was built with another {', '.join(differ)}; use a new "
                             "--out or the same settings", path=str(path))
        return
    write_text_atomic(path, json.dumps(manifest, indent=2))


def build(out, n: int, config: SynthesisConfig, seed: int = 0, shard=(1, 1),
          per_scene: int = 1, synthesizer: SampleSynthesizer | None = None,
          log="stderr", device: str = "cpu") -> int:
    """Generate samples ``0..n-1`` (those of this shard) that are not on disk yet.

    ``per_scene`` samples share one composite scene (and its prior solve, the dominant
    cost): sample ``i`` is crop ``i % per_scene`` of scene ``i // per_scene``, each drawn
    from its own seed, so the result does not depend on sharding or on what already exists.
    Shards split by scene. Returns the number written; progress (rate, ETA) goes to ``log``.
    """
    out = Path(out)
    if log == "stderr":     # the stream of the moment (not the one at import: a test's)
        log = sys.stderr
    k, m = shard
    _check_manifest(out, {"format": FORMAT, "seed": int(seed), "per_scene": int(per_scene),
                          "config": config.to_dict()})
    n_scenes = -(-n // per_scene)
    todo = {}
    for s in range(k - 1, n_scenes, m):
        missing = [i for i in range(s * per_scene, min(n, (s + 1) * per_scene))
                   if not (out / f"{i:07d}.npz").exists()]
        if missing:
            todo[s] = missing
    total = sum(len(v) for v in todo.values())
    if log:
        print(f"building {total} of {n} samples into {out} (shard {k}/{m}, "
              f"{per_scene} per scene)", file=log)
    if not total:
        return 0
    synth = synthesizer or SampleSynthesizer(config, device=device)
    _remove_stale_temps(out)
    start, done = time.monotonic(), 0
    for s, indices in todo.items():
        scene = synth.scene(np.random.default_rng([int(seed), s]))
        for i in indices:
            sample = synth.crop(scene, np.random.default_rng([int(seed), s, i % per_scene]))
            save_npz_atomic(out / f"{i:07d}.npz", **encode_sample(sample))
            done += 1
        if log:
            rate = (time.monotonic() - start) / done
            print(f"  [{done}/{total}] {indices[-1]:07d}.npz  {rate:.2f} s/sample  "
                  f"ETA {rate * (total - done) / 60:.1f} min", file=log, flush=True)
    return total


def _remove_stale_temps(out: Path, max_age_s: float = 3600.0) -> None:
    """Temp files a killed builder left (``.0000037.<random>.npz``); a shard building beside
    this one writes its own for seconds, so only old ones go."""
    now = time.time()
    for tmp in out.glob(".[0-9]*.npz"):
        try:
            if now - tmp.stat().st_mtime > max_age_s:
                tmp.unlink()
        except OSError:
            pass


def generate_sample(synth: SampleSynthesizer, seed: int, i: int, per_scene: int = 1) -> dict:
    """Sample ``i`` exactly as :func:`build` makes it (regenerating one costs a scene)."""
    s = i // per_scene
    scene = synth.scene(np.random.default_rng([int(seed), s]))
    return synth.crop(scene, np.random.default_rng([int(seed), s, i % per_scene]))


def _torch_sample(sample: dict, with_prior: bool):
    import torch

    keys = ["image", "trimap", "alpha", "fg", "bg"] + (["prior"] if with_prior else [])
    return {k: torch.from_numpy(np.ascontiguousarray(sample[k])) for k in keys}


def _flip(sample: dict, rng: np.random.Generator) -> dict:
    # The whole sample flips together: context must stay consistent with its query.
    if rng.random() < 0.5:
        for k in ("image", "trimap", "alpha", "fg", "bg", "prior"):
            if k in sample:
                sample[k] = sample[k][..., ::-1]
    return sample


def _torch_dataset_base():
    import torch.utils.data

    return torch.utils.data.Dataset


class PatchFolderDataset(_torch_dataset_base()):  # type: ignore[misc]  # torch imported lazily
    """Samples of a folder made by :func:`build`, as float32 torch tensors.

    Item ``i`` is a dict: ``image``, ``fg``, ``bg`` (P+1, 3, p, p) sRGB 0-1; ``trimap`` (P+1,
    p, p) {0, 0.5, 1}; ``alpha`` (P+1, p, p) 0-1; ``prior`` (P+1, p, p) when present and
    ``with_prior`` is not False. Index 0 on the patch axis is the query. The default
    collate stacks them to (B, P+1, ...).

    A random horizontal flip is drawn from (seed, epoch, i), so workers need no seeding of
    their own and a run is reproducible; call :meth:`set_epoch` each epoch for new flips.
    """

    def __init__(self, folder, flip: bool = True, seed: int = 0, with_prior: bool | None = None):
        self.folder = Path(folder)
        self.paths = sample_paths(self.folder)
        if not self.paths:
            raise UsageError("no samples (build them with python -m "
                             "nuke_hdmatt.training.dataset build)", path=str(self.folder))
        manifest = self.folder / MANIFEST
        self.manifest = json.loads(manifest.read_text()) if manifest.exists() else {}
        has_prior = bool(self.manifest.get("config", {}).get("prior", True))
        if with_prior and not has_prior:
            raise UsageError("samples were built with --no-prior", path=str(self.folder))
        self.with_prior = has_prior if with_prior is None else with_prior
        self.prior_solver = manifest_prior_solver(self.folder) or "cf"
        self.flip, self.seed, self.epoch = flip, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        sample = load_sample(self.paths[i])
        if self.flip:
            sample = _flip(sample, np.random.default_rng([self.seed, self.epoch, int(i)]))
        return _torch_sample(sample, self.with_prior)


class SyntheticDataset(_torch_dataset_base()):  # type: ignore[misc]  # torch imported lazily
    """Samples synthesised on the fly (no prior by default: the solve is too slow for the
    loader). Item ``i`` of epoch ``e`` comes from seed (seed, e, i): reproducible and the
    same whatever worker draws it. Same item layout as :class:`PatchFolderDataset`."""

    def __init__(self, config: SynthesisConfig, length: int, seed: int = 0):
        self.config, self.length, self.seed, self.epoch = config, int(length), seed, 0
        self._synth: SampleSynthesizer | None = None  # built in the worker: sources hold memory maps

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        if self._synth is None:
            self._synth = SampleSynthesizer(self.config)
        sample = self._synth(np.random.default_rng([self.seed, self.epoch, int(i)]))
        return _torch_sample(sample, self.config.prior)


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        k, m = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like K/M, got {text!r}") from None
    if not 1 <= k <= m:
        raise UsageError(f"--shard {text}: need 1 <= K <= M")
    return k, m


def _cascade_overrides(args) -> dict:
    from ..engine.weights import default_weights_path, file_sha256
    if not 0.0 < args.prior_cascade <= 1.0 or not args.prior_downscale:
        raise UsageError("--prior-cascade must be in (0, 1] and needs --prior-downscale > 0")
    path = Path(args.cascade_weights) if args.cascade_weights else default_weights_path()
    if path is None or not path.is_file():
        raise UsageError("--cascade-weights: no such weights file", path=str(path or "nuke_hdmatt/model/"))
    # the hash pins what made the priors: a folder resumed with other weights is refused
    return {"prior_cascade_probability": args.prior_cascade,
            "prior_cascade_weights": str(path.resolve()), "prior_cascade_sha256": file_sha256(path)}


def main(argv=None) -> int:
    from ..errors import ArgumentParser
    from ..stop_signals import install_stop_handlers, restore_handlers
    parser = ArgumentParser(prog="python -m nuke_hdmatt.training.dataset",
                            description="Pre-generate HDMatt training samples.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write N samples (.npz) into a folder, resumable")
    b.add_argument("--out", required=True)
    b.add_argument("--n", type=int, required=True)
    b.add_argument("--patch", type=int, default=320)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--holdout", default=",".join(VALIDATION_IMAGES),
                   help="dev images never used (default: the validation split)")
    b.add_argument("--context", type=int, default=4, help="context patches per sample")
    b.add_argument("--context-rule", choices=("frame", "random"), default="frame",
                   help="frame: context windows chosen from the scene's grid by the engine's "
                        "rule (default); random: random windows of the scene")
    b.add_argument("--crops", default=None,
                   help="crop sides resized to --patch (default: 1x,1.5x,2x patch)")
    b.add_argument("--scene", type=int, default=0, help="scene side (0: max crop + patch)")
    b.add_argument("--no-prior", action="store_true", help="skip the closed-form prior")
    b.add_argument("--prior-solver", default="cf", metavar="S",
                   help="PyMatting solvers averaged for the prior, joined by '+' (cf, cf+knn); "
                        "the network trained on these samples must use the same")
    b.add_argument("--prior-downscale", type=float, default=0.0, metavar="P",
                   help="share of scenes whose prior is solved at 1/2-1/4 size and enlarged, "
                        "as the engine's global prior on large plates (default 0)")
    b.add_argument("--prior-cascade", type=float, default=0.0, metavar="P",
                   help="share of the shrunk-prior scenes given the engine's cascade prior "
                        "instead (the network of --cascade-weights run on the shrunk scene)")
    b.add_argument("--cascade-weights", default=None, metavar="FILE",
                   help="weights for --prior-cascade (default: the bundled model)")
    b.add_argument("--highres", type=float, default=None, metavar="P",
                   help="share of dev foregrounds drawn from the high-resolution alphas at native "
                        "scale (default: SynthesisConfig's)")
    b.add_argument("--procedural", type=float, default=None, metavar="P",
                   help="share of procedural foregrounds (default: SynthesisConfig's)")
    b.add_argument("--see-through", type=float, default=None, metavar="P",
                   help="share of procedural foregrounds that are translucent fabric, meshes "
                        "or smoke (default: SynthesisConfig's)")
    b.add_argument("--flags", type=float, default=None, metavar="P",
                   help="share of the see-through fabric held on an opaque pole, as a flag is "
                        "(default: SynthesisConfig's)")
    b.add_argument("--plate-strands", type=float, default=None, metavar="P",
                   help="share of procedural hair drawn 1-3 px wide, as on a 4K plate "
                        "(default: SynthesisConfig's)")
    b.add_argument("--highres-scale", choices=("native", "random"), default="native",
                   help="high-resolution foregrounds placed at their own scale (native, default) "
                        "or shrunk at random like the others")
    b.add_argument("--colour-overlap", type=float, default=None, metavar="P",
                   help="share of scenes whose foreground colours are pulled towards the "
                        "background's (default: SynthesisConfig's)")
    b.add_argument("--device", default="cpu",
                   help="torch device of the prior solves and foreground colours (cpu, cuda)")
    b.add_argument("--per-scene", type=int, default=1,
                   help="samples cut from each composite scene (shares its prior solve)")
    b.add_argument("--shard", default="1/1", help="K/M: build every M-th scene from K")
    args = parser.parse_args(argv)

    def body():
        overrides = {"n_context": args.context, "context_rule": args.context_rule,
                     "scene_size": args.scene, "highres_native": args.highres_scale == "native",
                     "prior": not args.no_prior,
                     "prior_downscale_probability": args.prior_downscale,
                     "prior_solver": args.prior_solver,
                     "holdout": tuple(h.strip().upper() for h in args.holdout.split(",") if h.strip())}
        for flag, name, value in (("highres", "highres_probability", args.highres),
                                  ("procedural", "procedural_probability", args.procedural),
                                  ("see-through", "see_through_probability", args.see_through),
                                  ("flags", "flag_probability", args.flags),
                                  ("plate-strands", "plate_strand_probability", args.plate_strands),
                                  ("colour-overlap", "colour_overlap_probability",
                                   args.colour_overlap)):
            if value is not None:
                if not 0.0 <= value <= 1.0:
                    raise UsageError(f"--{flag} must be in [0, 1], got {value}")
                overrides[name] = value
        if not 0.0 <= args.prior_downscale <= 1.0:
            raise UsageError(f"--prior-downscale must be in [0, 1], got {args.prior_downscale}")
        if args.context < 0:
            raise UsageError(f"--context must be 0 or more, got {args.context}")
        if args.prior_cascade:
            overrides.update(_cascade_overrides(args))
        if args.crops:
            try:
                overrides["crop_sizes"] = tuple(int(c) for c in args.crops.split(","))
            except ValueError:
                raise UsageError(f"--crops must be integers, got {args.crops!r}") from None
            if min(overrides["crop_sizes"]) < 16:
                raise UsageError(f"--crops must be 16 px or more, got {args.crops!r}")
        try:
            from ..engine.config import prior_solver_names
            prior_solver_names(args.prior_solver)
        except ValueError as exc:
            raise UsageError(f"--prior-solver: {exc}") from None
        if args.n < 1 or args.patch < 16:
            raise UsageError("--n must be >= 1 and --patch >= 16")
        config = SynthesisConfig.for_patch(args.patch, **overrides)
        if args.per_scene < 1:
            raise UsageError("--per-scene must be >= 1")
        if args.scene and args.scene < max(config.crop_sizes):
            raise UsageError(f"--scene {args.scene} is smaller than the largest crop "
                             f"({max(config.crop_sizes)} px); give 0 (the default) or more")
        data = shared_data_dir()
        if config.procedural_probability < 1 and not (data / "alphamatting-dev").is_dir():
            # procedural-only samples, then real ones once the data is back: a folder whose
            # contents depend on the machine that built each part
            raise UsageError("the shared data (alphamatting-dev) is not there; give "
                             "--procedural 1 for procedural foregrounds only, or set "
                             "$HDMATT_SHARED_DATA", path=str(data))
        if args.device != "cpu":
            from ..engine.runner import resolve_device
            resolve_device(args.device)         # one line for a missing CUDA, before any work
        build(args.out, args.n, config, seed=args.seed, shard=_parse_shard(args.shard),
              per_scene=args.per_scene, device=args.device)

    # SIGTERM (a farm's or pkill's stop) as Ctrl-C: the sample being written is removed
    previous = install_stop_handlers()
    try:
        return run_reporting("dataset build", body,
                             "interrupted; finished samples are kept, rerun to resume")
    finally:
        restore_handlers(previous)


if __name__ == "__main__":
    sys.exit(main())
