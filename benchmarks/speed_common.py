"""Timing helpers shared by the speed benchmarks: variants that take turns, the best of several calls, and the
library's own training step (``Trainer.train_step``) on random images."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from resnetlab.data import SplitArrays, make_bundle
from resnetlab.train import TrainConfig
from resnetlab.train.device import resolve_precision
from resnetlab.train.distributed import DistInfo
from resnetlab.train.trainer import Trainer

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


def library_trainer(name: str, precision: str, channels_last: bool = True, batch: int = 128, *, size: int = 32,
                    checkpointing: bool = False) -> Trainer:
    """The library's own ``Trainer`` (the model, SGD, schedule and step ``resnetlab train`` uses) on random uint8
    images of ``size``: what the speed benchmarks time, so no copy of the training step can drift from it."""
    torch.manual_seed(0)
    n = 2 * batch
    arrays = SplitArrays(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8), torch.randint(0, 10, (n,)),
                         torch.randint(0, 256, (16, 3, size, size), dtype=torch.uint8), torch.randint(0, 10, (16,)),
                         [str(i) for i in range(10)])
    cfg = TrainConfig.from_dict(dict(
        model=name, data="random", recipe="benchmark", batch_size=batch, val_size=0, lr=0.01, precision=precision,
        channels_last=channels_last, activation_checkpointing=checkpointing, max_iters=10**9, milestones=(),
        eval_test=False, device="cpu"))
    return Trainer(cfg, make_bundle(arrays, val_size=0, seed=0), DistInfo())


def train_step_fn(name: str, precision: str, channels_last: bool, batch: int = 128,
                  batches: Batches | None = None) -> Callable[[], None]:
    """One SGD step of the library's training path (``Trainer.train_step``); ``batches`` feeds it (default: one
    preloaded batch)."""
    trainer = library_trainer(name, precision, channels_last, batch)
    fixed = (trainer.data.train_x[:batch], trainer.data.train_y[:batch])
    batches = batches or (lambda: fixed)

    def step() -> None:
        trainer.train_step(*batches())

    return step
