"""Weights files: safetensors with the model configuration stored in the header.

Stored in float16 (small enough to commit), loaded as float32.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..atomic import atomic_path
from ..errors import WeightsError
from .config import ModelConfig

FORMAT = "hdmatt-weights-1"
# The shipped weights are package data (nuke_hdmatt/model/), so a wheel carries them.
MODEL_DIR = Path(__file__).resolve().parents[1] / "model"
DEFAULT_NAME = "hdmatt.safetensors"
BUNDLED_WEIGHTS = MODEL_DIR / DEFAULT_NAME


def default_weights_path() -> Path | None:
    """The weights shipped in the package (``nuke_hdmatt/model/hdmatt.safetensors``), or None
    when this install has none. Environment variables are the caller's business (the CLI
    reads ``$HDMATT_WEIGHTS``)."""
    return BUNDLED_WEIGHTS if BUNDLED_WEIGHTS.is_file() else None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified_sha256(path: str | Path) -> str:
    """The file's sha256, checked against ``<file>.sha256`` when one sits beside it (as it
    does for the shipped weights): a damaged or swapped file must not load and run.

    Raises
    ------
    WeightsError
        The file is missing, or its sha256 differs from the one recorded beside it.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError("weights file not found", path=str(path))
    sha = file_sha256(path)
    record = path.with_name(path.name + ".sha256")
    try:
        words = record.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return sha
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"cannot read its checksum file {record}: {exc}", path=str(path)) from None
    expected = words[0].lower() if words else ""
    if expected != sha:
        raise WeightsError(f"sha256 {sha[:12]}... does not match {record.name} "
                           f"({expected[:12] or 'empty'}...): the file is damaged or not the "
                           "one recorded", path=str(path))
    return sha


def save_weights(net, path: Path, extra: dict | None = None) -> None:
    """Write ``net``'s state (float16) and configuration atomically to ``path``."""
    import torch
    from safetensors.torch import save_file
    state = {}
    for name, t in net.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        state[name] = t.detach().to("cpu", torch.float16 if t.is_floating_point() else t.dtype).contiguous()
    meta = {"format": FORMAT, "config": net.cfg.to_json()}
    if extra:
        meta["info"] = json.dumps(extra, sort_keys=True)
    with atomic_path(path, ".safetensors") as tmp:
        save_file(state, tmp, metadata=meta)


def header_metadata(path: str | Path) -> dict:
    """A weights file's header metadata (``format``, ``config``, ``info``) read without
    torch or safetensors (the format's first 8 bytes give the JSON header's length), for
    ``hdmatt info`` and checks that must stay light.

    Raises
    ------
    WeightsError
        Not a safetensors file, or not one of HDMatt's.
    """
    import struct
    path = Path(path)
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if not 0 < n <= 100 << 20:
                raise ValueError(f"a header of {n} bytes")
            meta = json.loads(f.read(n)).get("__metadata__") or {}
    except FileNotFoundError:
        raise WeightsError("weights file not found", path=str(path)) from None
    except (OSError, ValueError, struct.error, AttributeError) as exc:
        raise WeightsError(f"not a readable safetensors file ({exc})", path=str(path)) from None
    if meta.get("format") != FORMAT:
        raise WeightsError("not an HDMatt weights file (no hdmatt config in header)",
                           path=str(path))
    return meta


def read_header(path: Path) -> dict:
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except FileNotFoundError:
        raise WeightsError("weights file not found", path=str(path)) from None
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise WeightsError(f"not a readable safetensors file ({exc})", path=str(path)) from None
    if meta.get("format") != FORMAT:
        raise WeightsError("not an HDMatt weights file (no hdmatt config in header)", path=str(path))
    return meta


def load_network(path: Path):
    """Build the network described in the file's header and load its weights (float32)."""
    from safetensors.torch import load_file

    from .network import HDMattNet
    path = Path(path)
    if not path.exists():
        raise WeightsError("weights file not found", path=str(path))
    meta = read_header(path)
    cfg = ModelConfig.from_json(meta["config"])
    net = HDMattNet(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise WeightsError(f"weights do not match their configuration (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]})", path=str(path))
    info = json.loads(meta.get("info", "{}"))
    return net, info


def detail_model_path(weights: Path) -> Path:
    """Where the detail model fitted to ``weights`` lives: ``<file>.detail.json`` beside it."""
    return Path(weights).with_name(Path(weights).name + ".detail.json")


def load_detail_model(weights: Path, sha256: str):
    """(:class:`.detail.DetailModel`, digest) fitted to the weights at ``weights`` whose
    sha256 is ``sha256``; (None, "") when there is none beside them, or when it names other
    weights (retrained weights make their old detail model meaningless).

    Raises
    ------
    WeightsError
        The detail file exists but cannot be read or is not a detail model.
    """
    from .detail import DetailModel
    path = detail_model_path(weights)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, ""
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"cannot read its detail model {path.name}: {exc}",
                           path=str(weights)) from None
    try:
        record = json.loads(text)
        if record.get("weights_sha256") != sha256:
            return None, ""
        model = DetailModel.from_dict(record["model"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WeightsError(f"its detail model {path.name} is damaged ({exc})",
                           path=str(weights)) from None
    return model, hashlib.sha256(text.encode()).hexdigest()
