"""Process-level settings, each measured in fresh processes: peak memory of training, the allocator, the
intra-op thread count. ``benchmarks/speed.py --sections memory allocator threads`` runs them; this file is also the
child those sections start.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from speed_common import DEFAULT_PRECISION, interleave, library_trainer, train_step_fn

from resnetlab import create_model
from resnetlab.inference import InferenceModel
from resnetlab.runtime import tune_allocator


# --- memory -------------------------------------------------------------------------------------------------------
def _peak_rss_child(name: str, precision: str, checkpointing: bool, steps: int = 2) -> None:
    tune_allocator()
    trainer = library_trainer(name, precision, checkpointing=checkpointing)
    images, labels = trainer.data.train_x[:128], trainer.data.train_y[:128]
    for _ in range(steps):
        trainer.train_step(images, labels)
    print(json.dumps({"peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def bench_memory(models: list[str]) -> list[str]:
    rows = ["| model (batch 128, training) | fp32 | bf16 | bf16 + activation checkpointing |", "|---|---:|---:|---:|"]
    for name in models:
        cells = []
        for precision, ckpt in (("fp32", False), ("bf16", False), ("bf16", True)):
            proc = subprocess.run([sys.executable, __file__, "--memory-child", name, precision, str(int(ckpt))],
                                  capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
            if proc.returncode:
                cells.append(f"failed ({proc.stderr.strip().splitlines()[-1][:60]})")
            else:
                cells.append(f"{json.loads(proc.stdout.strip().splitlines()[-1])['peak_gb']:.2f} GB")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


# --- allocator ----------------------------------------------------------------------------------------------------
ALLOCATORS = {  # name -> environment of a child process
    "glibc malloc, system settings": {"RESNETLAB_MALLOC": "system"},
    "glibc malloc, tuned (the library's choice, runtime.py)": {},
    "jemalloc (LD_PRELOAD)": {"LD_PRELOAD": "jemalloc"},
    "tcmalloc (LD_PRELOAD)": {"LD_PRELOAD": "tcmalloc_minimal"},
}


def _allocator_child(steps: int) -> None:
    """img/s of ResNet-20 training (the default path), and of ResNet-56 (batch 128) and ResNet-50 (batch 16)
    inference: the reference mode and the library's bf16 inference path."""
    tune_allocator()  # as every resnetlab command does (skipped under RESNETLAB_MALLOC=system or another malloc)
    out = {}
    step = train_step_fn("resnet20", DEFAULT_PRECISION, True)
    cases: list[tuple[str, Callable[[], None], int, int]] = [("train", step, steps, 128)]
    for name, size, batch in (("resnet56", 32, 128), ("resnet50", 224, 16)):
        torch.manual_seed(0)
        model = create_model(name).eval()
        x = torch.randn(batch, 3, size, size)
        fast = InferenceModel(model, "bf16")

        def ref(model: torch.nn.Module = model, x: torch.Tensor = x) -> None:
            with torch.no_grad():
                model(x)

        cases += [(f"{name} reference", ref, 5, batch), (f"{name} bf16", lambda f=fast, x=x: f(x), 5, batch)]
    for key, fn, n, batch in cases:
        times = []
        for i in range(n + 2):
            t0 = time.perf_counter()
            fn()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        out[key] = batch / statistics.median(times)
    print(json.dumps(out))


def bench_allocator(rounds: int, steps: int = 15) -> list[str]:
    import ctypes.util

    envs: dict[str, dict[str, str]] = {}
    for label, env in ALLOCATORS.items():
        if "LD_PRELOAD" in env:
            lib = ctypes.util.find_library(env["LD_PRELOAD"])
            if lib is None:
                continue  # not installed here (Debian: libjemalloc2, libtcmalloc-minimal4)
            env = {"LD_PRELOAD": lib}
        envs[label] = env
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "RESNETLAB_MALLOC")}
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in envs}
    for _ in range(rounds):  # processes take turns
        for label, env in envs.items():
            proc = subprocess.run([sys.executable, __file__, "--allocator-child", str(steps)],
                                  capture_output=True, text=True, env={**base, **env})
            if proc.returncode:
                raise SystemExit(f"the {label} child failed:\n{proc.stderr}")
            samples[label].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    med = {label: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for label, runs in samples.items()}
    system = med["glibc malloc, system settings"]
    keys = ["train", "resnet56 reference", "resnet56 bf16", "resnet50 reference", "resnet50 bf16"]
    rows = [f"| allocator (a fresh process each; img/s, x system settings) | ResNet-20 training ({DEFAULT_PRECISION} "
            "channels_last) | ResNet-56 inference, reference fp32 NCHW, batch 128 | ResNet-56, bf16 inference path | "
            "ResNet-50 inference, reference, batch 16 | ResNet-50, bf16 inference path |",
            "|---|---:|---:|---:|---:|---:|"]
    for label, m in med.items():
        rows.append(f"| {label} | " + " | ".join(f"{m[k]:,.0f} ({m[k] / system[k]:.2f}x)" for k in keys) + " |")
    lib = med["glibc malloc, tuned (the library's choice, runtime.py)"]
    rows.append("")
    for name in ("resnet56", "resnet50"):
        rows.append(f"{name}: the library's bf16 inference path in its process x the reference in a process with "
                    f"the system's malloc settings: {lib[name + ' bf16'] / system[name + ' reference']:.2f}; "
                    f"in the same process: {lib[name + ' bf16'] / lib[name + ' reference']:.2f}")
    missing = [k for k in ALLOCATORS if k not in envs]
    if missing:
        rows.append(f"\nnot installed here: {', '.join(missing)}")
    return rows


# --- threads ------------------------------------------------------------------------------------------------------
def bench_threads(rounds: int) -> list[str]:
    rows = [f"| intra-op threads | ResNet-20 training img/s ({DEFAULT_PRECISION} channels_last) |", "|---|---:|"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    step = train_step_fn("resnet20", DEFAULT_PRECISION, True)
    results: dict[int, float] = {}
    for n in sorted({1, cores}):
        torch.set_num_threads(n)
        results[n] = 128 / interleave({"s": step}, rounds, warmup=2)["s"]
    torch.set_num_threads(cores)
    for n, ips in results.items():
        note = " (the library's choice: all cores of this process's share)" if n == cores else ""
        rows.append(f"| {n}{note} | {ips:,.0f} |")
    return rows



def main() -> None:
    parser = argparse.ArgumentParser(description="a child process of benchmarks/speed.py")
    parser.add_argument("--memory-child", nargs=3)
    parser.add_argument("--allocator-child", type=int)
    args = parser.parse_args()
    if args.memory_child:
        name, precision, ckpt = args.memory_child
        _peak_rss_child(name, precision, ckpt == "1")
    elif args.allocator_child:
        _allocator_child(args.allocator_child)
    else:
        parser.error("run benchmarks/speed.py --sections memory allocator threads")


if __name__ == "__main__":
    main()
