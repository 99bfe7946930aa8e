"""Seconds per training iteration of a net in the default mode here, and what a budget would take at that rate.

    python benchmarks/cost_per_iteration.py --model resnet1202 [--steps 3] [--checkpointing]

For nets too costly to train here (ResNet-1202, Fig. 6 right): a few timed steps after one warm-up, at batch 128,
bf16 autocast and channels_last (``precision=auto`` on this CPU), random images (the cost does not depend on them).
Run it idle.
"""

from __future__ import annotations

import argparse
import resource
import time

from speed_common import library_trainer

from resnetlab.runtime import machine, tune_allocator

BUDGETS = {"quick": 2_400, "medium": 6_400, "paper": 64_000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet1202")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing (less memory)")
    args = parser.parse_args()
    tune_allocator()
    trainer = library_trainer(args.model, "bf16", checkpointing=args.checkpointing)
    images, labels = trainer.data.train_x[:128], trainer.data.train_y[:128]
    times = []
    for i in range(args.steps + 1):
        t0 = time.perf_counter()
        trainer.train_step(images, labels)
        if i:  # the first step is the warm-up
            times.append(time.perf_counter() - t0)
    per_it = sorted(times)[len(times) // 2]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"machine: {machine()}; {args.model}, batch 128, bf16 channels_last"
          f"{', activation checkpointing' if args.checkpointing else ''}: {per_it:.2f} s per iteration (median of "
          f"{args.steps}), peak RSS {peak:.1f} GB")
    for name, iters in BUDGETS.items():
        print(f"  {name} budget, {iters:,} iterations: {iters * per_it / 3600:.1f} h of training steps")


if __name__ == "__main__":
    main()
