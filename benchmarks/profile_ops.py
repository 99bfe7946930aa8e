"""Where the time goes: torch.profiler of one training step and one inference batch per model, by operator.

    python benchmarks/profile_ops.py [--steps 3]

For each case, the operators with the most self time, their share of the step, and for the ops that do the
arithmetic (convolutions, matrix multiplies) the GFLOP/s they achieve (the profiler's FLOP count over their time).
Compare those with the conv-shaped GEMM rates that ``benchmarks/speed.py --sections limit`` prints. Run it idle.
"""

from __future__ import annotations

import argparse

import torch
from speed_common import train_step_fn
from torch.profiler import ProfilerActivity, profile

from resnetlab import create_model
from resnetlab.inference import InferenceModel
from resnetlab.models.complexity import complexity
from resnetlab.runtime import machine, tune_allocator

CPU = torch.device("cpu")
TOP = 12


def training_step(name: str, batch: int = 128):
    """The library's own training step (``Trainer.train_step``), bf16 and channels_last, on random images."""
    return train_step_fn(name, "bf16", True, batch)


def inference_batch(name: str, size: int, batch: int):
    torch.manual_seed(0)
    fast = InferenceModel(create_model(name).eval(), "bf16")
    x = torch.randn(batch, 3, size, size)
    return lambda: fast(x)


def table(label: str, fn, steps: int, flops_per_call: float) -> list[str]:
    for _ in range(2):  # warm-up: oneDNN primitives are created on the first calls
        fn()
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        for _ in range(steps):
            fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rate_all = flops_per_call * steps / total / 1e3  # us -> GFLOP/s
    rows = [f"### {label}: {total / steps / 1e3:.1f} ms per call, {rate_all:.0f} GFLOP/s overall (the model's "
            "multiply-adds x 2, x 3 for training)",
            "", "| operator | share of self time | calls per step | self ms per step | GFLOP/s (FLOP-counted ops) |",
            "|---|---:|---:|---:|---:|"]
    for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:TOP]:
        rate = f"{e.flops / e.cpu_time_total / 1e3:.0f}" if e.flops else ""
        rows.append(f"| `{e.key}` | {100 * e.self_cpu_time_total / total:.1f}% | {e.count // steps} | "
                    f"{e.self_cpu_time_total / steps / 1e3:.2f} | {rate} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    tune_allocator()
    print(f"machine: {machine()}; torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    macs = {n: complexity(n).macs for n in ("resnet20", "resnet56", "resnet50")}
    cases = {
        "ResNet-20 training step, bf16 channels_last, batch 128": (training_step("resnet20"),
                                                                   6 * macs["resnet20"] * 128),
        "ResNet-56 training step, bf16 channels_last, batch 128": (training_step("resnet56"),
                                                                   6 * macs["resnet56"] * 128),
        "ResNet-56 inference, bf16 path, batch 128": (inference_batch("resnet56", 32, 128), 2 * macs["resnet56"] * 128),
        "ResNet-50 inference, bf16 path, batch 16": (inference_batch("resnet50", 224, 16), 2 * macs["resnet50"] * 16),
    }
    for label, (fn, flops) in cases.items():
        print("\n".join(table(label, fn, args.steps, flops)) + "\n", flush=True)


if __name__ == "__main__":
    main()
