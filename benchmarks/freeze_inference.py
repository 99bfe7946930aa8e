"""oneDNN's fusions through a public API for inference: torch.compile's CPU backend with freezing (weights
constant-folded and prepacked; conv + add + ReLU fused), against the fp32 reference and the bf16 inference path.

    python benchmarks/freeze_inference.py [--rounds 5]

Speed does not depend on the weights (random ones here). Run it idle: the variants take turns.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch._inductor.config as inductor_config

import resnetlab
from resnetlab.inference import InferenceModel
from resnetlab.runtime import machine, tune_allocator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tune_allocator()
    print(f"machine: {machine()}; torch {torch.__version__}\n")
    print("| model | input | batch | reference fp32 img/s | bf16 path (x ref) | bf16 path + compile (x ref) | "
          "bf16 path + compile with freezing (x ref) | top-1 agreement, frozen vs bf16 path (random weights) | "
          "compile time |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, size, batch in (("resnet56", 32, 128), ("resnet50", 224, 16)):
        torch.manual_seed(0)
        model = resnetlab.create_model(name).eval()
        x = torch.randn(batch, 3, size, size)
        path = InferenceModel(model, "bf16")
        variants = {"ref": model, "bf16": path}
        seconds = {}
        for label, freezing in (("compiled", False), ("frozen", True)):
            torch._dynamo.reset()
            inductor_config.freezing = freezing
            fast = InferenceModel(model, "bf16")
            fast.net = torch.compile(fast.net, dynamic=False)
            t0 = time.perf_counter()
            with torch.no_grad():
                fast(x)
            seconds[label] = time.perf_counter() - t0
            variants[label] = fast
        samples: dict[str, list[float]] = {k: [] for k in variants}
        with torch.no_grad():
            for fn in variants.values():
                fn(x)
            for _ in range(args.rounds):
                for k, fn in variants.items():
                    t0 = time.perf_counter()
                    fn(x)
                    samples[k].append(time.perf_counter() - t0)
            agree = 100 * (variants["frozen"](x).argmax(1) == path(x).argmax(1)).double().mean().item()
        ips = {k: batch / statistics.median(v) for k, v in samples.items()}
        cells = " | ".join(f"{ips[k]:,.0f} ({ips[k] / ips['ref']:.2f}x)" for k in ("bf16", "compiled", "frozen"))
        print(f"| {name} | {size} | {batch} | {ips['ref']:,.0f} | {cells} | {agree:.1f}% | "
              f"{seconds['compiled']:.0f} s / {seconds['frozen']:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
