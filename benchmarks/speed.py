"""Speed of the library's training and inference paths on this machine, as ratios inside one run.

    python benchmarks/speed.py                       # everything (about 15 minutes on 2 cores)
    python benchmarks/speed.py --sections train data # a subset
    python benchmarks/speed.py --checkpoint runs/quick/resnet56-.../checkpoint-0001600.pt --data DATA

Run it on an otherwise idle machine: a second busy process halves every figure and fakes ratios. Variants are
interleaved (round-robin, several rounds) and medians are reported. Training FLOPs = 3 x forward multiply-adds x 2,
with the forward counted by the model's own complexity report (``torch.utils.flop_counter``). The memory, allocator
and thread sections live in ``speed_process.py`` (they measure fresh processes); the timing helpers in
``speed_common.py``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from speed_common import DEFAULT_PRECISION, Batch, best_seconds, interleave, train_step_fn
from speed_process import bench_allocator, bench_memory, bench_threads

from resnetlab import create_model
from resnetlab.data import BatchLoader, apply_crop_flip, draw_crop_flip, normalize
from resnetlab.inference import InferenceModel
from resnetlab.models.complexity import complexity
from resnetlab.runtime import machine, tune_allocator

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
TRAIN_MODES = {
    "reference (fp32, NCHW)": ("fp32", False),
    "fp32 channels_last (precision=fp32)": ("fp32", True),
    "bf16 channels_last (precision=bf16)": ("bf16", True),
}
DEFAULT_MODE = next(m for m, (p, cl) in TRAIN_MODES.items() if p == DEFAULT_PRECISION and cl)



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
    from resnetlab.weights import load

    loaded = load(checkpoint)
    model = loaded.model
    arrays = load_dataset(data or (loaded.run_config or {}).get("data") or "cifar10", progress=False)
    fast = InferenceModel(model, "bf16")
    same = wrong = total = 0
    with torch.no_grad():
        for s in range(0, arrays.test_x.shape[0], 500):
            x = normalize(arrays.test_x[s:s + 500], loaded.mean, loaded.std)
            pred = model(x).argmax(1)
            same += int((pred == fast(x).argmax(1)).sum())
            wrong += int((pred != arrays.test_y[s:s + 500]).sum())
            total += x.shape[0]
    return f"| {loaded.name} | {checkpoint} | {100 * wrong / total:.2f} | {total:,} | {100 * same / total:.2f}% |"



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="*", default=["limit", "train", "data", "inference", "memory", "threads",
                                                           "allocator"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--memory-models", default="resnet110,resnet1202")
    parser.add_argument("--checkpoint", action="append",
                        help="a trained CIFAR checkpoint, for bf16-vs-fp32 top-1 agreement (repeatable)")
    parser.add_argument("--data", help="its data (default: the checkpoint's)")
    args = parser.parse_args()
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
