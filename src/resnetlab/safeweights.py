"""A trained network as one safetensors file: weights, preprocessing and provenance, checked by SHA-256.

Every finished training run writes ``RUN_DIR/model.safetensors``; the committed runs of the experiments are these
files, and they are the released weights. Layout:

- ``model.<key>``: the state dict. Conv and linear weights are stored in float16 (half the bytes; the test error
  measured from the file is what a weights card reports), everything else (BN parameters and running statistics,
  biases) in float32, so nothing overflows: float16 stops at 65,504, which a plain net's BN variance can pass.
- ``preprocess.mean`` (and ``preprocess.std``): the normalisation statistics in 0..255 pixel units.
- metadata ``resnetlab``: JSON with the model name and options, the classes, the view (crop, pad), the
  normalisation and anything the caller adds (the run's iterations, data digest, command).

safetensors runs no code on load. It carries no checksum of its own, so the SHA-256 of the file's bytes is kept
beside it (``.sha256``) and in the run's ``summary.json``, and checked on every load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import ResNetLabError
from .io import atomic_write, read_checksum, sha256_hex, write_checksum

__all__ = ["FORMAT", "WeightsFile", "WeightsFileError", "load_model", "load_weights", "save_weights", "weights_bytes"]

FORMAT = "resnetlab.safetensors"
VERSION = 1


class WeightsFileError(ResNetLabError):
    """A weights file that is missing, damaged, or not what its checksum says."""


@dataclass
class WeightsFile:
    state_dict: dict[str, Tensor]  # float32 (float16 tensors widened on load)
    mean: Tensor
    std: Tensor | None
    meta: dict[str, Any]
    sha256: str


def _stored(key: str, t: Tensor) -> Tensor:
    t = t.detach().cpu().contiguous()
    if t.is_floating_point() and t.dim() >= 2 and key.endswith("weight"):  # conv / linear kernels
        return t.to(torch.float16)
    return t.float() if t.is_floating_point() else t


def weights_bytes(state_dict: dict[str, Tensor], mean: Tensor, std: Tensor | None, meta: dict[str, Any]) -> bytes:
    """The file's bytes: deterministic for the same inputs (tensors sorted by name, one metadata entry)."""
    from safetensors.torch import save

    tensors = {f"model.{k}": _stored(k, v) for k, v in state_dict.items()}
    tensors["preprocess.mean"] = mean.detach().cpu().float().contiguous()
    if std is not None:
        tensors["preprocess.std"] = std.detach().cpu().float().contiguous()
    header = {"format": FORMAT, "version": VERSION, **meta}
    return save(tensors, metadata={"resnetlab": json.dumps(header, sort_keys=True)})


def save_weights(path: Path, state_dict: dict[str, Tensor], mean: Tensor, std: Tensor | None,
                 meta: dict[str, Any]) -> str:
    """Write ``path`` and ``path.sha256`` atomically; returns the SHA-256 of the file."""
    data = weights_bytes(state_dict, mean, std, meta)
    digest = sha256_hex(data)
    atomic_write(path, lambda f: f.write(data))
    write_checksum(path, digest)
    return digest


def _expected_digest(path: Path, expected: str | None) -> str | None:
    return expected or read_checksum(path)


def load_weights(path: str | Path, sha256: str | None = None, *, require_checksum: bool = True) -> WeightsFile:
    """Read and verify a weights file. The SHA-256 is ``sha256`` if given, else the ``.sha256`` file beside it;
    a mismatch, a truncated or foreign file is one :class:`WeightsFileError` that names the file and what to do."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsFileError(f"cannot read weights file {path}: {exc.strerror or exc}") from None
    digest = sha256_hex(data)
    expected = _expected_digest(path, sha256)
    if expected is None and require_checksum:
        raise WeightsFileError(f"{path} has no SHA-256 to check it against (no {path.name}.sha256 beside it); "
                               "restore that file, or pass the expected sha256")
    if expected is not None and digest != expected:
        raise WeightsFileError(f"{path} is damaged: its SHA-256 is {digest[:16]}..., expected {expected[:16]}... "
                               "Delete it and fetch or train it again (git checkout restores a committed run)")
    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get("resnetlab", "{}"))
    except (SafetensorError, ValueError, KeyError) as exc:
        raise WeightsFileError(f"{path} is not a readable safetensors file ({exc}); delete it and fetch or train "
                               "it again") from None
    if meta.get("format") != FORMAT:
        raise WeightsFileError(f"{path} is a safetensors file but not a resnetlab weights file (no resnetlab "
                               "metadata); convert it with `resnetlab convert` first")
    state = {k[6:]: v.float() if v.is_floating_point() else v for k, v in tensors.items() if k.startswith("model.")}
    return WeightsFile(state, tensors["preprocess.mean"], tensors.get("preprocess.std"), meta, digest)


def load_model(path: str | Path, sha256: str | None = None) -> tuple[Any, WeightsFile]:
    """The network of a weights file, built from its metadata and loaded (eval mode, CPU), and the file itself."""
    from .models import create_model
    from .models.weights import load_state_dict

    wf = load_weights(path, sha256)
    model = create_model(wf.meta["model"], **wf.meta.get("model_kwargs", {}))
    load_state_dict(model, wf.state_dict, source=str(path))
    return model.eval(), wf
