"""int8 inference with VNNI through PyTorch's supported quantisation flow (torchao's PT2E, X86InductorQuantizer,
then torch.compile), against the fp32 reference and the library's bf16 path: speed, and top-1 agreement with fp32.

    pip install torchao   # not a dependency of the library
    python benchmarks/int8_inference.py --data ../shared/data/cifar10 [--weights resnet20.cifar10jpeg_medium]

Speed does not depend on the weights, so ResNet-56 and ResNet-50 are timed with random ones; the agreement needs a
trained net and uses released weights, calibrated on 1,000 training images and measured on the 10,000 test images.
Run it idle: the variants take turns.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import resnetlab
from resnetlab.data import load_dataset, normalize
from resnetlab.data.datasets import content_digest
from resnetlab.inference import InferenceModel
from resnetlab.runtime import machine, tune_allocator
from resnetlab.train.report import other_data_note


def functional_relus(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose blocks call ``F.relu`` instead of their one shared ``nn.ReLU`` module. The quantizer groups the
    calls of one module into one partition, and a block calls its ReLU twice ("Input partition has more than one
    output node"); ReLU has no state, so the network and its state dict are unchanged."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if "relu" in module._modules:
            del module._modules["relu"]
            object.__setattr__(module, "relu", F.relu)
    return model


def quantize(model: torch.nn.Module, calibration: list[torch.Tensor]) -> torch.nn.Module:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    with torch.no_grad():
        exported = torch.export.export(functional_relus(model).eval(), (calibration[0],)).module()
        prepared = prepare_pt2e(exported, quantizer)
        for x in calibration:
            prepared(x)
        converted = convert_pt2e(prepared)
        return torch.compile(converted)


def timed(variants: dict[str, object], x: torch.Tensor, rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {k: [] for k in variants}
    with torch.no_grad():
        for fn in variants.values():
            fn(x)
            fn(x)
        for _ in range(rounds):
            for k, fn in variants.items():
                t0 = time.perf_counter()
                fn(x)
                samples[k].append(time.perf_counter() - t0)
    return {k: x.shape[0] / statistics.median(v) for k, v in samples.items()}


def speed(name: str, size: int, batch: int, rounds: int) -> str:
    torch.manual_seed(0)
    model = resnetlab.create_model(name).eval()
    x = torch.randn(batch, 3, size, size)
    t0 = time.perf_counter()
    int8 = quantize(model, [torch.randn(batch, 3, size, size) for _ in range(2)])
    with torch.no_grad():
        int8(x)
    setup = time.perf_counter() - t0
    ips = timed({"ref": model, "bf16": InferenceModel(model, "bf16"), "int8": int8}, x, rounds)
    return (f"| {name} | {size} | {batch} | {ips['ref']:,.0f} | {ips['bf16']:,.0f} ({ips['bf16'] / ips['ref']:.2f}x) | "
            f"{ips['int8']:,.0f} ({ips['int8'] / ips['ref']:.2f}x) | {setup:.0f} s |")


def agreement(weights: str, data: str) -> str:
    model = resnetlab.create_model(weights.partition(".")[0], weights=weights).eval()
    arrays = load_dataset(data, progress=False)
    card = resnetlab.get_weights(weights)
    if (note := other_data_note(card.meta["dataset"]["digest"], content_digest(arrays))) is not None:
        print(f"note: {weights}: {note}", file=sys.stderr)  # the errors below are then not the card's
    mean = card.load().mean
    calib = [normalize(arrays.train_x[i:i + 500], mean) for i in range(0, 1000, 500)]  # the export's batch: 500
    int8 = quantize(model, calib)
    fp32, q, bf16 = [], [], []
    fast = InferenceModel(model, "bf16")
    with torch.no_grad():
        for i in range(0, len(arrays.test_x), 500):
            x = normalize(arrays.test_x[i:i + 500], mean)
            fp32.append(model(x).argmax(1))
            q.append(int8(x).argmax(1))
            bf16.append(fast(x).argmax(1))
    ref, q8, b16 = torch.cat(fp32), torch.cat(q), torch.cat(bf16)
    err = {k: 100 * (v != arrays.test_y).double().mean().item() for k, v in (("fp32", ref), ("int8", q8))}
    return (f"| {weights} | {err['fp32']:.2f} | {err['int8']:.2f} | {100 * (q8 == ref).double().mean():.2f}% | "
            f"{100 * (b16 == ref).double().mean():.2f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--weights", action="append", help="released weights for the agreement (repeatable)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-speed", action="store_true", help="only the agreement")
    args = parser.parse_args()
    tune_allocator()
    print(f"machine: {machine()}; torch {torch.__version__}\n")
    print("| model | input | batch | reference fp32 img/s | bf16 path (x reference) | int8 PT2E + compile (x "
          "reference) | quantise + compile time |\n|---|---|---:|---:|---:|---:|---:|")
    for name, size, batch in () if args.no_speed else (("resnet56", 32, 128), ("resnet50", 224, 16)):
        print(_guarded(lambda n=name, s=size, b=batch: speed(n, s, b, args.rounds), f"| {name} | {size} | {batch} |"),
              flush=True)
    print("\n| weights | fp32 test error (%) | int8 test error (%) | top-1 agreement int8 vs fp32 | bf16 vs fp32 |"
          "\n|---|---:|---:|---:|---:|")
    for w in args.weights or [resnetlab.list_weights("resnet20")[0]]:
        print(_guarded(lambda w=w: agreement(w, args.data), f"| {w} |"), flush=True)


def _guarded(fn, head: str) -> str:
    """The row, or where the flow fails on this model, the row saying how (a tried lever is reported either way)."""
    try:
        return fn()
    except Exception as exc:
        return f"{head} quantisation failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:100]} |"


if __name__ == "__main__":
    main()
