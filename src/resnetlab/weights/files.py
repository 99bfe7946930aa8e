"""Trained networks on disk: one format, and the older files that still load.

**The format** (``resnetlab.safetensors``): one safetensors file, checked by the SHA-256 kept beside it.

- ``model.<key>``: the state dict. Conv and linear weights are stored in float16 (half the bytes; the test error
  measured from the file is what a weights card reports), everything else (BN parameters and running statistics,
  biases) in float32, so nothing overflows: float16 stops at 65,504, which a plain net's BN variance can pass.
- ``preprocess.mean`` (and ``preprocess.std``): the normalisation statistics in 0..255 pixel units.
- metadata ``resnetlab``: JSON with the model's name and arguments (``model``, ``model_kwargs``), its ``classes``,
  its test view (``input_size``, ``pad``, ``loader``, or ``view``) and provenance (iterations, data digest, seed).

Every finished run writes one (``RUN_DIR/model.safetensors``); those files are the released weights, and
``resnetlab convert`` writes the same format. safetensors runs no code on load.

**Files that still load:** a training checkpoint (``checkpoint-NNNNNNN.pt``: it carries the same metadata under
``meta``; older ones are read from their config), a ``resnetlab.weights`` file (``torch.save`` of a dict, written by
``resnetlab convert`` before it wrote safetensors), and a bare state dict (weights only: the model must be named).
All are read with ``weights_only=True``: a file that would run code is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import io
from ..data.views import ViewSpec
from ..errors import ResNetLabError

__all__ = ["CHECKPOINT_FORMAT", "FORMAT", "CheckpointError", "WeightsFile", "WeightsFileError", "checkpoint_state",
           "load_checkpoint", "load_weights", "read_state_dict", "read_torch_bytes", "read_torch_file", "save_weights",
           "state_dict_of", "view_of", "weights_bytes"]

FORMAT = "resnetlab.safetensors"
VERSION = 1
CHECKPOINT_FORMAT = "resnetlab.checkpoint"
CHECKPOINT_VERSION = 1
LEGACY_FORMAT = "resnetlab.weights"  # what `resnetlab convert` wrote before it wrote FORMAT


class WeightsFileError(ResNetLabError):
    """A weights file that is missing, damaged, or not what its checksum says."""


class CheckpointError(ResNetLabError):
    """A checkpoint that cannot be used: corrupt, truncated, foreign, or failing its checksum."""


@dataclass
class WeightsFile:
    state_dict: dict[str, Tensor]  # float32 (float16 tensors widened on load)
    mean: Tensor
    std: Tensor | None
    meta: dict[str, Any]
    sha256: str


def view_of(meta: Mapping[str, Any]) -> ViewSpec:
    """The test view a file's metadata describes: ``view`` where written, else from its input size and loader (a
    streamed, ImageNet-style net is tested on a 256/224 resize, Sec. 3.4; a CIFAR net on the image, padded 4)."""
    if meta.get("view"):
        v = meta["view"]
        return ViewSpec(int(v["crop"]), int(v["resize"]), int(v["pad"]))
    size = int(meta["input_size"])
    return ViewSpec.imagenet(size) if meta.get("loader") == "stream" else ViewSpec.fixed(size, int(meta.get("pad", 4)))


# --- the format -----------------------------------------------------------------------------------------------------
def _stored(key: str, t: Tensor, half_kernels: bool) -> Tensor:
    t = t.detach().cpu().contiguous()
    if half_kernels and t.is_floating_point() and t.dim() >= 2 and key.endswith("weight"):  # conv / linear kernels
        return t.to(torch.float16)
    return t.float() if t.is_floating_point() else t


def weights_bytes(state_dict: Mapping[str, Tensor], mean: Tensor, std: Tensor | None, meta: dict[str, Any],
                  half_kernels: bool = True) -> bytes:
    """The file's bytes: deterministic for the same inputs (tensors sorted by name, one metadata entry). Trained
    runs store their kernels in float16; converted files keep the float32 of their source (``half_kernels=False``)."""
    from safetensors.torch import save

    tensors = {f"model.{k}": _stored(k, v, half_kernels) for k, v in state_dict.items()}
    tensors["preprocess.mean"] = mean.detach().cpu().float().contiguous()
    if std is not None:
        tensors["preprocess.std"] = std.detach().cpu().float().contiguous()
    header = {"format": FORMAT, "version": VERSION, **meta}
    return save(tensors, metadata={"resnetlab": json.dumps(header, sort_keys=True)})


def save_weights(path: Path, state_dict: Mapping[str, Tensor], mean: Tensor, std: Tensor | None,
                 meta: dict[str, Any], half_kernels: bool = True) -> str:
    """Write ``path`` and ``path.sha256`` atomically; returns the SHA-256 of the file."""
    data = weights_bytes(state_dict, mean, std, meta, half_kernels)
    digest = io.sha256_hex(data)
    io.atomic_write(Path(path), lambda f: f.write(data))
    io.write_checksum(Path(path), digest)
    return digest


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
    digest = io.sha256_hex(data)
    expected = sha256 or io.read_checksum(path)
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


# --- PyTorch files: checkpoints, the older weights files, bare state dicts ------------------------------------------
def _unpickle(data: bytes, path: Path, error: type[Exception], what: str) -> Any:
    """The one ``torch.load`` of the library's PyTorch files: weights-only, so a file that would run code is
    refused, never executed; any failure is one line naming the file."""
    try:
        return torch.load(BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, or a pickle that would run code
        first = (str(exc).splitlines() or [""])[0][:200]  # an empty file raises with an empty message
        raise error(f"cannot read {what}{path}: {type(exc).__name__}: {first} (corrupt, truncated, or not a "
                    "weights-only PyTorch file; files that would run code are refused)") from None


def read_torch_file(path: str | Path) -> Any:
    """The object in a ``torch.save`` file, loaded weights-only (a file that would run code is refused)."""
    return read_torch_bytes(path)[1]


def read_torch_bytes(path: str | Path) -> tuple[bytes, Any]:
    """A ``torch.save`` file's bytes and the object they hold (weights-only): one read serves a checksum and the
    load."""
    path = Path(path)
    if not path.is_file():
        raise ResNetLabError(f"{path} does not exist")
    data = path.read_bytes()
    return data, _unpickle(data, path, ResNetLabError, "")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a ``.pt``/``.pth`` file: a bare state dict, or a checkpoint holding one under ``model``,
    ``state_dict`` or ``model_state``. Loaded with ``weights_only=True``: a file that would run code is refused."""
    return state_dict_of(read_torch_file(path), path)


def state_dict_of(obj: Any, path: str | Path) -> dict[str, Tensor]:
    """The state dict in ``obj``, unpickled from ``path``: ``obj`` itself, or the one it holds under ``model``,
    ``state_dict`` or ``model_state``."""
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ResNetLabError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    return obj


def _verify_checkpoint(path: Path, data: bytes, required: bool) -> None:
    expected = io.read_checksum(path)
    if expected is None and not io.checksum_path(path).is_file():
        if required:
            raise CheckpointError(f"checkpoint {path} has no checksum file {io.checksum_path(path).name}: it was not "
                                  "completely written (or not by resnetlab); it cannot be trusted")
        return
    if io.sha256_hex(data) != expected:
        raise CheckpointError(f"checkpoint {path} fails its SHA-256 check: the file is damaged (a changed or "
                              "truncated byte); use an earlier checkpoint")


def load_checkpoint(path: str | Path, require_checksum: bool = True) -> dict[str, Any]:
    """Read and verify a training checkpoint; weights-only loading, so a file carrying code is refused, never
    executed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"checkpoint {path} is empty (zero bytes): it was never completely written")
    _verify_checkpoint(path, data, required=require_checksum)  # before unpickling: a damaged file is never loaded
    return _checkpoint_format(path, _unpickle(data, path, CheckpointError, "checkpoint "))


def checkpoint_state(path: Path, data: bytes, obj: Any, require_checksum: bool = True) -> dict[str, Any]:
    """``obj``, unpickled from ``data`` (the bytes of ``path``), checked as a training checkpoint: its checksum
    against the ``.sha256`` beside it, its format and version."""
    _verify_checkpoint(path, data, required=require_checksum)
    return _checkpoint_format(path, obj)


def _checkpoint_format(path: Path, obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a resnetlab training checkpoint (a bare state dict? `resnetlab "
                              "export --checkpoint` and `load_state_dict` take those)")
    if obj.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {obj.get('version')}; this resnetlab reads "
                              f"{CHECKPOINT_VERSION}")
    return obj


def checkpoint_meta(state: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's model metadata, as a weights file's: written under ``meta`` since the weights format and
    checkpoints share it, else (older checkpoints) read from the run's config."""
    if isinstance(state.get("meta"), dict):
        return dict(state["meta"])
    cfg, classes = state["config"], state["classes"]
    return {"model": cfg["model"], "model_kwargs": {**cfg.get("model_kwargs", {}), "num_classes": len(classes)},
            "classes": list(state["classes"]), "input_size": int(state["input_size"]), "pad": cfg.get("pad", 4),
            "normalize": cfg.get("normalize"), "loader": cfg.get("loader"), "iterations": state.get("iteration"),
            "recipe": cfg.get("recipe"), "seed": cfg.get("seed"), "data": state.get("data_content"),
            "precision": state.get("precision")}


def legacy_weights(obj: Mapping[str, Any]) -> WeightsFile:
    """A ``resnetlab.weights`` file (``torch.save`` of a dict) as a :class:`WeightsFile`."""
    meta = {"model": obj["model_name"], "model_kwargs": dict(obj["model_kwargs"]), "classes": obj.get("classes"),
            "input_size": int(obj["view"]["crop"]), "view": dict(obj["view"]), "source": obj.get("source"),
            "extra": dict(obj.get("extra") or {})}
    return WeightsFile(dict(obj["model"]), obj["mean"], obj.get("std"), meta, "")
