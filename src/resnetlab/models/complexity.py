"""Parameters and multiply-adds, counted by running the model (``torch.utils.flop_counter``), never by formula."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from . import specs
from ._registry import list_models, model_info


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int, in_chans: int = 3) -> int:
    """Multiply-adds of one forward pass of one image (the paper's "FLOPs", Table 1).

    Runs on the meta device when the model is there (no memory, no compute); the counter reports 2 FLOPs per MAC for
    convolutions and matrix products, which is all the paper counts (BN, ReLU, pooling and additions are omitted).
    """
    device = next(model.parameters()).device
    x = torch.zeros(1, in_chans, input_size, input_size, device=device)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class Complexity:
    name: str
    family: str
    input_size: int
    params: int
    macs: int
    paper: specs.PaperNumbers  # as the paper prints them (empty when built with non-default options)
    reference: specs.ReferenceCount | None  # the exact count from outside the paper, with its source


def complexity(name: str, **overrides: object) -> Complexity:
    """Parameters and multiply-adds of a registered model, built on the meta device (instant, no memory)."""
    info = model_info(name)
    with torch.device("meta"):
        model = info.build(**overrides)
    if not overrides:
        paper, reference = specs.PAPER.get(name, specs.PaperNumbers()), specs.REFERENCE_PARAMS.get(name)
    elif set(overrides) == {"shortcut"}:
        option = str(overrides["shortcut"])
        paper = specs.PAPER_VARIANTS.get((name, option), specs.PaperNumbers())
        reference = specs.REFERENCE_VARIANT_PARAMS.get((name, option))
    else:
        paper, reference = specs.PaperNumbers(), None
    return Complexity(name, info.family, info.input_size, count_params(model), count_macs(model, info.input_size),
                      paper, reference)


def printed_value(text: str) -> tuple[float, float]:
    """A number as the paper prints it ("0.27M", "19.4M", "3.6") -> (its value, one unit of its last digit)."""
    scale = 1e6 if text.endswith("M") else 1.0
    digits = text.removesuffix("M")
    return float(digits) * scale, 10.0 ** -len(digits.partition(".")[2]) * scale


def params_match(ours: int, printed: str | None) -> bool | None:
    """Whether our count, rounded as the paper rounds it, is the printed one (None: the paper prints none)."""
    if printed is None:
        return None
    value, unit = printed_value(printed)
    return abs(ours - value) <= unit / 2


def macs_match(ours: int, printed_flops: str | None) -> bool | None:
    """Whether counted multiply-adds agree with the paper's FLOPs (x10^9) to the precision it prints them.

    The paper rounds inconsistently (ResNet-34 3.66 -> "3.6", ResNet-101 7.57 -> "7.6"), so ours must be within one
    unit of the printed last digit (0.1 x 10^9), not half of one.
    """
    if printed_flops is None:
        return None
    value, unit = printed_value(printed_flops)
    return abs(ours - value * 1e9) < unit * 1e9


def complexity_table(names: list[str] | None = None) -> str:
    """Markdown table of every registered model: our counts beside the paper's printed numbers and the exact
    reference counts, with a match column, and a legend saying where each number comes from.

    Match: parameters equal the reference count exactly and round to the paper's printed count; multiply-adds as
    ``macs_match`` says.
    """
    rows = [
        "| model | input | params | paper params (Table 6) | reference params | reference | MACs (x10^9) | "
        "paper FLOPs (x10^9, Table 1) | match |",
        "|---|---|---:|---:|---:|---|---:|---:|:---:|",
    ]
    used: list[str] = []
    for name in names or list_models():
        c = complexity(name)
        ref = c.reference
        checks = [ref.params == c.params if ref else None, params_match(c.params, c.paper.params),
                  macs_match(c.macs, c.paper.flops)]
        known = [ok for ok in checks if ok is not None]
        match = "" if not known else ("yes" if all(known) else "NO")
        if ref and ref.source not in used:
            used.append(ref.source)
        rows.append(
            f"| {name} | {c.input_size}x{c.input_size} | {c.params:,} | {c.paper.params or ''} | "
            f"{f'{ref.params:,}' if ref else ''} | {ref.source if ref else ''} | {c.macs / 1e9:.3f} | "
            f"{c.paper.flops or ''} | {match} |"
        )
    legend = ["", "params and MACs: counted here (MACs by running the model). Paper columns: as the paper prints "
              "them, rounded (Table 6; Table 1, VGG-19 from Sec. 3.3). The paper prints no exact count; reference "
              "params are exact counts from:"]
    legend += [f"- {source}: {specs.REFERENCE_SOURCES[source]}" for source in used]
    return "\n".join(rows + (legend if used else []))
