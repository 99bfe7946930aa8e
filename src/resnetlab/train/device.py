"""Where and in what precision a run computes: the device, bf16 where the hardware has it, autocast, threads."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch

from ..inference import COMPUTE_DTYPES
from .config import ConfigError, TrainConfig
from .distributed import DistInfo


def select_device(name: str, info: DistInfo | None = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda but no CUDA GPU is available; use --set device=cpu")
        if device.index is None:
            device = torch.device("cuda", (info or DistInfo()).local_rank)
    return device


def has_fast_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 in hardware: a GPU that supports it, or a CPU with AVX512-BF16 or AMX units
    (elsewhere bf16 autocast is emulated and slower than fp32)."""
    device = torch.device(device)
    if device.type == "cuda":  # bf16 tensor cores from Ampere (8.x) on; is_bf16_supported() also counts emulation
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence looked up defensively
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


@dataclass(frozen=True)
class Placement:
    """Where and in what precision this process computes: the hardware section's "auto" values made concrete once,
    at the top of a run (:func:`place`), then passed down and recorded (checkpoints, metrics, summary)."""

    device: torch.device
    precision: str  # fp32, bf16 or fp16: what the training steps compute in
    eval_precision: str  # what every recorded validation and test error is measured in
    data_on_device: bool  # in-memory data kept on the device and augmented there


def place(cfg: TrainConfig, info: DistInfo | None = None) -> Placement:
    """Every machine-dependent choice of ``cfg``, made once: the device (this process's GPU under torchrun), the
    precisions ("auto": bf16 where the hardware has bf16 units), and whether in-memory data lives on the device."""
    h = cfg.hardware
    device = select_device(h.device, info)
    precision = resolve_precision(h.precision, device)
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU has no bfloat16 support; use --set precision=fp16")
    resident = h.data_on_device == "on" or (h.data_on_device == "auto" and device.type == "cuda")
    return Placement(device, precision, resolve_precision(cfg.eval.precision, device), resident)


def resolve_precision(precision: str, device: torch.device | str = "auto") -> str:
    """``auto`` -> bf16 where the hardware has bf16 units, else fp32; other values as given."""
    if precision != "auto":
        return precision
    return "bf16" if has_fast_bf16(select_device(str(device))) else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision by autocast (weights and optimizer stay fp32); fp32 runs plain. ``precision`` is concrete
    (fp32, bf16 or fp16): "auto" is resolved once, by :func:`place` or :func:`resolve_precision`."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=COMPUTE_DTYPES[precision])


def set_threads(cfg: TrainConfig, info: DistInfo) -> None:
    """Intra-op threads: the cores of this machine shared between the local processes (the library's choice)."""
    n = cfg.hardware.threads or max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else
                               (os.cpu_count() or 1)) // info.local_world_size)
    torch.set_num_threads(n)

