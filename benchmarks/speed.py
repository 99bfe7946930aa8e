"""Speed of the library's training and inference paths on this machine, as ratios inside one run.

    python benchmarks/speed.py                       # everything (about 15 minutes on 2 cores)
    python benchmarks/speed.py --sections train data # a subset
    python benchmarks/speed.py --checkpoint runs/quick/resnet56-.../checkpoint-0001600.pt --data DATA

Run it on an otherwise idle machine: a second busy process halves every figure and fakes ratios. Variants are
interleaved (round-robin, several rounds) and medians are reported. Training FLOPs = 3 x forward multiply-adds x 2,
with the forward counted by the model's own complexity report (``torch.utils.flop_counter``).
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from resnetlab import create_model
from resnetlab.data import BatchLoader, apply_crop_flip, draw_crop_flip, normalize
from resnetlab.experiments.runner import machine
from resnetlab.inference import InferenceModel
from resnetlab.models.complexity import complexity
from resnetlab.runtime import tune_allocator
from resnetlab.train.device import autocast, resolve_precision


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


# --- the machine's limit ------------------------------------------------------------------------------------------
LIMIT_SIZES = (1024, 2048, 3072, 4096)
# The GEMMs a convolution becomes (im2col): rows = batch x H x W, inner = 9 x C_in, columns = C_out.
CONV_GEMMS = {
    "CIFAR stage 1: 32x32, 16 ch, batch 128": (128 * 32 * 32, 9 * 16, 16),
    "CIFAR stage 2: 16x16, 32 ch, batch 128": (128 * 16 * 16, 9 * 32, 32),
    "CIFAR stage 3: 8x8, 64 ch, batch 128": (128 * 8 * 8, 9 * 64, 64),
    "ResNet-50 3x3, 56x56, 64 ch, batch 16": (16 * 56 * 56, 9 * 64, 64),
    "ResNet-50 3x3, 14x14, 256 ch, batch 16": (16 * 14 * 14, 9 * 256, 256),
}
CIFAR_STAGES = [k for k in CONV_GEMMS if k.startswith("CIFAR")]


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


def gemm_gflops(m: int, k: int, n: int, dtype: torch.dtype) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    return 2 * m * k * n / best_seconds(lambda: torch.mm(a, b)) / 1e9


def conv_gflops(rows: int, inner: int, cout: int, side: int, dtype: torch.dtype) -> float:
    """The real 3x3 convolution (channels_last, as the library runs it) of a CONV_GEMMS shape."""
    batch, cin = rows // (side * side), inner // 9
    x = torch.randn(batch, cin, side, side, dtype=dtype).to(memory_format=torch.channels_last)
    w = torch.randn(cout, cin, 3, 3, dtype=dtype).to(memory_format=torch.channels_last)
    with torch.no_grad():
        return 2 * rows * inner * cout / best_seconds(lambda: F.conv2d(x, w, padding=1)) / 1e9


@dataclass
class Limits:
    large: dict[str, float]  # dtype -> best GFLOP/s over the square sizes
    conv: dict[str, dict[str, float]]  # dtype -> shape -> the best of its GEMM and its direct 3x3 convolution

    def cifar_conv(self, dtype: str) -> float:
        """The conv-shaped rate of a CIFAR ResNet: its three stages have equal FLOPs, so the harmonic mean of the
        best rate this machine reaches at each stage's shape (oneDNN's direct convolution beats the GEMM there)."""
        rates = [self.conv[dtype][k] for k in CIFAR_STAGES]
        return len(rates) / sum(1 / r for r in rates)


def measure_limits() -> tuple[Limits, list[str]]:
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    rows = ["| square matrix multiply n | fp32 GFLOP/s | bf16 GFLOP/s |", "|---:|---:|---:|"]
    large = {k: 0.0 for k in dtypes}
    for n in LIMIT_SIZES:
        rates = {k: gemm_gflops(n, n, n, d) for k, d in dtypes.items()}
        large = {k: max(large[k], rates[k]) for k in dtypes}
        rows.append(f"| {n} | {rates['fp32']:.0f} | {rates['bf16']:.0f} |")
    rows.append(f"| **best (the large-GEMM rate)** | **{large['fp32']:.0f}** | **{large['bf16']:.0f}** |")
    rows += ["", "| conv-shaped GEMM (rows x inner x columns) | fp32 GEMM | bf16 GEMM | fp32 conv2d | bf16 conv2d |",
             "|---|---:|---:|---:|---:|"]
    conv: dict[str, dict[str, float]] = {k: {} for k in dtypes}
    for label, (m, k, n) in CONV_GEMMS.items():
        side = int(label.split(", ")[0].split(" ")[-1].split("x")[0])
        gemm = {name: gemm_gflops(m, k, n, d) for name, d in dtypes.items()}
        direct = {name: conv_gflops(m, k, n, side, d) for name, d in dtypes.items()}
        for name in dtypes:
            conv[name][label] = max(gemm[name], direct[name])
        cells = [*gemm.values(), *direct.values()]
        rows.append(f"| {label} ({m:,} x {k} x {n}) | " + " | ".join(f"{c:.0f}" for c in cells) + " |")
    limits = Limits(large, conv)
    rows.append(f"\nCIFAR ResNet conv-shaped rate (harmonic mean over the three stages of the better of GEMM and "
                f"conv2d): fp32 "
                f"{limits.cifar_conv('fp32'):.0f}, bf16 {limits.cifar_conv('bf16'):.0f} GFLOP/s")
    return limits, rows


# --- training -----------------------------------------------------------------------------------------------------
CPU = torch.device("cpu")
DEFAULT_PRECISION = resolve_precision("auto", CPU)  # what TrainConfig's precision="auto" computes in here
TRAIN_MODES = {
    "reference (fp32, NCHW)": ("fp32", False),
    "fp32 channels_last (precision=fp32)": ("fp32", True),
    "bf16 channels_last (precision=bf16)": ("bf16", True),
}
DEFAULT_MODE = next(m for m, (p, cl) in TRAIN_MODES.items() if p == DEFAULT_PRECISION and cl)


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


def bench_train(rounds: int, limits: Limits) -> list[str]:
    large, conv = limits.large["bf16"], limits.cifar_conv("bf16")
    rows = ["| model | mode | img/s | x reference | GFLOP/s | % of large-GEMM bf16 | % of conv-shaped bf16 |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for name in ("resnet20", "resnet56"):
        flops_per_img = 3 * 2 * complexity(name).macs
        steps = {mode: train_step_fn(name, p, cl) for mode, (p, cl) in TRAIN_MODES.items()}
        secs = interleave(steps, rounds, warmup=2)
        ref = 128 / secs["reference (fp32, NCHW)"]
        for mode, s in secs.items():
            ips = 128 / s
            gflops = ips * flops_per_img / 1e9
            label = f"**{mode}: the default here**" if mode == DEFAULT_MODE else mode
            rows.append(f"| {name} | {label} | {ips:,.0f} | {ips / ref:.2f} | {gflops:.0f} | "
                        f"{100 * gflops / large:.0f}% | {100 * gflops / conv:.0f}% |")
    return rows


# --- data pipeline ------------------------------------------------------------------------------------------------
def bench_data(rounds: int) -> list[str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the target is per core
    x = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (50_000,))
    g = torch.Generator().manual_seed(0)
    batch = x[:128]
    it = endless(BatchLoader(x, y, 128, seed=0, train=True).batches)

    def augment() -> None:
        apply_crop_flip(batch, 4, draw_crop_flip(128, 4, g))

    def load() -> None:
        next(it)

    secs = interleave({"augment": augment, "loader": load}, rounds * 20)
    torch.set_num_threads(threads)
    rows = ["| stage (1 thread) | img/s |", "|---|---:|",
            f"| pad-4 crop + flip of a uint8 batch of 128 | {128 / secs['augment']:,.0f} |",
            f"| BatchLoader: shuffle gather + augmentation | {128 / secs['loader']:,.0f} |"]

    # A training epoch fed by each loader vs the same number of steps on one preloaded batch.
    rows += ["", "| data-loader choice: ResNet-20 training steps (default precision, channels_last) fed by | "
             "time vs steps on one preloaded batch |", "|---|---:|"]
    rows += _loader_overhead(x, y, steps=40)
    return rows


def endless(batches: Callable[[int], Iterator[Batch]]) -> Iterator[Batch]:
    """Batches of epoch 0, 1, 2, ... without end."""
    epoch = 0
    while True:
        yield from batches(epoch)
        epoch += 1


class PerImageDataset(torch.utils.data.Dataset):
    """A common reimplementation's loading, kept on uint8 tensors: every image padded, cropped and flipped by
    itself in ``__getitem__``, then collated by a DataLoader (the library instead gathers and augments whole
    batches with tensor ops)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, pad: int = 4) -> None:
        self.x, self.y, self.pad = x, y, pad

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        p, (h, w) = self.pad, self.x.shape[-2:]
        img = F.pad(self.x[i], (p, p, p, p))
        dy, dx = torch.randint(0, 2 * p + 1, (2,)).tolist()
        img = img[:, dy:dy + h, dx:dx + w]
        return (img.flip(-1) if torch.rand(()) < 0.5 else img), self.y[i]


def _loader_overhead(x: torch.Tensor, y: torch.Tensor, steps: int) -> list[str]:
    """The same training steps fed by each loader (gather + augmentation each step) or by one preloaded batch.

    Each timed call starts the loader afresh and stops it after ``steps`` batches, so worker processes never run
    (prefetch) while another variant is timed; their start-up is counted once per ``steps`` steps.
    """
    def library(epoch: int) -> Iterator[Batch]:
        return iter(BatchLoader(x, y, 128, seed=1, train=True).batches(epoch))

    def per_image(workers: int) -> Callable[[int], Iterator[Batch]]:
        dl = torch.utils.data.DataLoader(PerImageDataset(x, y), batch_size=128, shuffle=True, drop_last=True,
                                         num_workers=workers)
        return lambda _epoch: iter(dl)

    feeds = {"the library's BatchLoader (whole-batch tensor ops, in process)": library}
    feeds.update({f"a per-image DataLoader, {w} worker processes": per_image(w) for w in (0, 2)})
    preloaded = train_step_fn("resnet20", DEFAULT_PRECISION, True)
    state: dict[str, Iterator[Batch]] = {}
    steppers = {name: train_step_fn("resnet20", DEFAULT_PRECISION, True,
                                    batches=lambda name=name: next(state[name])) for name in feeds}

    def run(name: str) -> Callable[[], None]:
        def call() -> None:
            if name == "preloaded":
                for _ in range(steps):
                    preloaded()
                return
            state[name] = feeds[name](0)
            for _ in range(steps):
                steppers[name]()
            del state[name]  # a DataLoader iterator shuts its workers down when dropped

        return call

    secs = interleave({k: run(k) for k in ["preloaded", *feeds]}, rounds=3, warmup=1)
    return [f"| {name} | {100 * (secs[name] / secs['preloaded'] - 1):+.1f}% |" for name in feeds]


# --- inference ----------------------------------------------------------------------------------------------------
def bench_inference(rounds: int, limits: Limits) -> list[str]:
    rows = ["| model | input | batch | reference fp32 img/s | inference fp32 | inference bf16 | bf16 x reference | "
            "bf16 + torch.compile x reference | reference GFLOP/s (% of large-GEMM fp32) | bf16 path GFLOP/s (% of "
            "large-GEMM bf16) | the target x reference would need (% of large-GEMM bf16) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fp32_limit, bf16_limit = limits.large["fp32"], limits.large["bf16"]
    # ResNet-56 at the batch of a common reimplementation's test loader (128) and at the library's (1,000).
    for name, size, batch, compiled, target in (("resnet56", 32, 128, True, 4), ("resnet56", 32, 1000, True, 4),
                                                ("resnet50", 224, 16, True, 3)):
        row, ips = _inference_row(name, size, batch, rounds, compiled)
        flops = 2 * complexity(name).macs  # per image, forward
        ref, bf16 = ips["ref"] * flops / 1e9, ips["bf16"] * flops / 1e9
        need = target * ref
        rows.append(row + f" {ref:.0f} ({100 * ref / fp32_limit:.0f}%) | {bf16:.0f} ({100 * bf16 / bf16_limit:.0f}%) "
                    f"| {target}x: {need:.0f} GFLOP/s ({100 * need / bf16_limit:.0f}%) |")
    return rows


def _inference_row(name: str, size: int, batch: int, rounds: int, compiled: bool) -> tuple[str, dict[str, float]]:
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(batch, 3, size, size)
    fast32, fast16 = InferenceModel(model, "fp32"), InferenceModel(model, "bf16")

    def ref() -> None:
        with torch.no_grad():
            model(x)

    variants = {"ref": ref, "fp32": lambda: fast32(x), "bf16": lambda: fast16(x)}
    cell = "-"
    if compiled:
        torch._dynamo.reset()  # a fresh, static-shape compile for this batch size
        fast16c = InferenceModel(model, "bf16")
        fast16c.net = torch.compile(fast16c.net, dynamic=False)
        try:
            t0 = time.perf_counter()
            fast16c(x)
            compile_s = time.perf_counter() - t0
            variants["compiled"] = lambda: fast16c(x)
        except Exception as exc:  # a compiler missing or failing here: report it, keep the rest of the table
            cell = f"failed: {type(exc).__name__}"
    secs = interleave(variants, rounds)
    ips = {k: batch / v for k, v in secs.items()}
    if "compiled" in ips:
        cell = f"{ips['compiled'] / ips['ref']:.2f} (compiling: {compile_s:.0f} s)"
    return (f"| {name} | {size} | {batch} | {ips['ref']:,.0f} | {ips['fp32']:,.0f} | {ips['bf16']:,.0f} | "
            f"{ips['bf16'] / ips['ref']:.2f} | {cell} |"), ips


def agreement(checkpoint: str, data: str | None) -> str:
    """Top-1 agreement of the bf16 inference path with fp32 on a test set (a trained checkpoint)."""
    from resnetlab.data import load_dataset
    from resnetlab.train.trained import load_trained

    model, cfg, state = load_trained(checkpoint)
    arrays = load_dataset(data or cfg.data, progress=False)
    fast = InferenceModel(model, "bf16")
    same = wrong = total = 0
    with torch.no_grad():
        for s in range(0, arrays.test_x.shape[0], 500):
            x = normalize(arrays.test_x[s:s + 500], state["mean"], state["std"])
            pred = model(x).argmax(1)
            same += int((pred == fast(x).argmax(1)).sum())
            wrong += int((pred != arrays.test_y[s:s + 500]).sum())
            total += x.shape[0]
    return f"| {cfg.model} | {checkpoint} | {100 * wrong / total:.2f} | {total:,} | {100 * same / total:.2f}% |"


# --- memory -------------------------------------------------------------------------------------------------------
def _peak_rss_child(name: str, precision: str, checkpointing: bool, steps: int = 2) -> None:
    tune_allocator()
    model = create_model(name).to(memory_format=torch.channels_last).train()
    if checkpointing:
        model.set_grad_checkpointing(True)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))
    for _ in range(steps):
        opt.zero_grad()
        with autocast(CPU, precision):
            out = model(x)
        F.cross_entropy(out.float(), y).backward()
        opt.step()
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="*", default=["limit", "train", "data", "inference", "memory", "threads",
                                                           "allocator"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--memory-models", default="resnet110,resnet1202")
    parser.add_argument("--checkpoint", action="append",
                        help="a trained CIFAR checkpoint, for bf16-vs-fp32 top-1 agreement (repeatable)")
    parser.add_argument("--data", help="its data (default: the checkpoint's)")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--allocator-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        name, precision, ckpt = args.memory_child
        _peak_rss_child(name, precision, ckpt == "1")
        return
    if args.allocator_child:
        _allocator_child(args.allocator_child)
        return
    tune_allocator()  # the library's choice, as in every resnetlab command; the allocator section shows its effect
    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}")
    limits = Limits({"fp32": float("nan"), "bf16": float("nan")}, {})
    if {"limit", "train", "inference"} & set(args.sections):
        limits, rows = measure_limits()
        print("## limit (best of 6 calls after 2 warm-ups)\n\n" + "\n".join(rows) + "\n", flush=True)
    sections = {
        "train": lambda: bench_train(args.rounds, limits),
        "data": lambda: bench_data(args.rounds),
        "inference": lambda: bench_inference(args.rounds, limits),
        "memory": lambda: bench_memory(args.memory_models.split(",")),
        "threads": lambda: bench_threads(args.rounds),
        "allocator": lambda: bench_allocator(max(3, args.rounds // 2)),
    }
    for name, fn in sections.items():
        if name in args.sections:
            print(f"## {name}\n")
            print("\n".join(fn()), flush=True)
            print()
    if args.checkpoint:
        print("## agreement\n\n| model | checkpoint | fp32 test error (%) | test images | "
              "top-1 agreement, bf16 vs fp32 |\n|---|---|---:|---:|---:|")
        for path in args.checkpoint:
            print(agreement(path, args.data), flush=True)


if __name__ == "__main__":
    main()
