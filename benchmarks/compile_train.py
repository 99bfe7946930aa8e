"""torch.compile of the training step against eager, in one run: img/s, compile time, the result after N iterations,
and whether a compiled run still resumes bit for bit.

    python benchmarks/compile_train.py --data ../shared/data/cifar10 [--models resnet20,resnet56] [--iters 200]

Run it on an idle machine. The eager and the compiled trainer take turns in blocks of steps (so a drift hits both),
on the same batches from the same initial weights, in the library's default mode here (``precision=auto``,
channels_last). Both are then evaluated in fp32 on the test set. The resume check runs the compiled trainer to
N/2, saves its state, loads it into a fresh compiled trainer and continues to N: its parameters must equal those of
the uninterrupted compiled run exactly.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from resnetlab.data import load_dataset, make_bundle
from resnetlab.runtime import machine, tune_allocator
from resnetlab.train import TrainConfig
from resnetlab.train.trainer import Trainer

BLOCK = 25  # steps per turn


def trainer(model: str, bundle, compile_: bool) -> Trainer:
    cfg = TrainConfig.from_dict(dict(model=model, data="-", compile=compile_, max_iters=64_000))
    return Trainer(cfg, bundle)


def run(t: Trainer, stop: int, times: list[float] | None = None) -> None:
    """Advance ``t`` to iteration ``stop`` (across epochs), appending seconds per step to ``times``."""
    while t.iteration < stop:
        epoch, start = divmod(t.iteration, t.steps_per_epoch)
        for images, labels in t.loader.batches(epoch, start):
            if t.iteration >= stop:
                return
            t0 = time.perf_counter()
            t.train_step(images, labels)
            if times is not None:
                times.append(time.perf_counter() - t0)


def same(a: Trainer, b: Trainer) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(),
                                                 strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--models", default="resnet20,resnet56")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--resume-models", default="resnet20", help="models whose compiled resume is checked")
    args = parser.parse_args()
    tune_allocator()
    bundle = make_bundle(load_dataset(args.data, progress=False), val_size=5000, seed=0)
    print(f"machine: {machine()}; torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print("| model | eager img/s | compiled img/s | compiled / eager | compile time (first step) | max abs param "
          f"difference after {args.iters} its | test error eager / compiled (%) | compiled resume bit for bit |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for model in args.models.split(","):
        eager, comp = trainer(model, bundle, False), trainer(model, bundle, True)
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        t0 = time.perf_counter()
        run(comp, 1)
        first = time.perf_counter() - t0
        run(eager, 1)
        while eager.iteration < args.iters:  # turns of BLOCK steps each
            stop = min(args.iters, eager.iteration + BLOCK)
            run(eager, stop, times["eager"])
            run(comp, stop, times["compiled"])
        warm = 10  # compiled graphs may recompile once more (e.g. at the first lr change); skip the first steps
        ips = {k: comp.cfg.optim.batch_size / statistics.median(v[warm:]) for k, v in times.items()}
        diff = max((a - b).abs().max().item() for a, b in zip(eager.model.state_dict().values(),
                                                               comp.model.state_dict().values(), strict=True)
                   if a.is_floating_point())
        errors = [t.evaluate("test").top1_error for t in (eager, comp)]
        resumed = "not checked"
        if model in args.resume_models.split(","):
            half = trainer(model, bundle, True)
            run(half, args.iters // 2)
            state = half.state_dict()
            cont = trainer(model, bundle, True)
            cont.load_state_dict(state)
            run(cont, args.iters)
            resumed = "yes" if same(cont, comp) else "**no**"
        print(f"| {model} | {ips['eager']:,.0f} | {ips['compiled']:,.0f} | {ips['compiled'] / ips['eager']:.2f} | "
              f"{first:.0f} s | {diff:.2e} | {errors[0]:.2f} / {errors[1]:.2f} | {resumed} |", flush=True)


if __name__ == "__main__":
    main()
