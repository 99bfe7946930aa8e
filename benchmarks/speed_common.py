"""Timing helpers shared by the speed benchmarks: variants that take turns, the best of several calls, and one SGD
step of the library's training path."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from resnetlab import create_model
from resnetlab.data import normalize
from resnetlab.train.device import autocast, resolve_precision

CPU = torch.device("cpu")
DEFAULT_PRECISION = resolve_precision("auto", CPU)  # what TrainConfig's precision="auto" computes in here


def interleave(variants: dict[str, Callable[[], None]], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each variant, variants taking turns so that drifts hit all of them alike."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}



def best_seconds(fn: Callable[[], object], calls: int = 6, warmup: int = 2) -> float:
    """The fastest of ``calls`` calls after ``warmup`` (a limit is what the machine can do, not a typical call)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best



Batch = tuple[torch.Tensor, torch.Tensor]  # uint8 images [B, 3, 32, 32], labels [B]
Batches = Callable[[], Batch]


def train_step_fn(name: str, precision: str, channels_last: bool, batch: int = 128,
                  batches: Batches | None = None) -> Callable[[], None]:
    """One SGD step of the library's training path; ``batches`` feeds it (default: one preloaded batch)."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model(name).to(memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    fixed = (torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (batch,)))
    mean = fixed[0].float().mean(0)
    batches = batches or (lambda: fixed)

    def step() -> None:
        images, labels = batches()
        x = normalize(images, mean, memory_format=fmt)
        opt.zero_grad(set_to_none=True)
        with autocast(CPU, precision):
            out = model(x)
        F.cross_entropy(out.float(), labels).backward()
        opt.step()

    return step

