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
    paper: specs.PaperNumbers


def complexity(name: str, **overrides: object) -> Complexity:
    """Parameters and multiply-adds of a registered model, built on the meta device (instant, no memory)."""
    info = model_info(name)
    with torch.device("meta"):
        model = info.build(**overrides)
    paper = specs.PAPER.get(name, specs.PaperNumbers()) if not overrides else specs.PaperNumbers()
    return Complexity(name, info.family, info.input_size, count_params(model), count_macs(model, info.input_size),
                      paper)


# The paper prints multiply-adds with one decimal (x10^9) and is not consistent in rounding (ResNet-34 3.66 -> "3.6",
# ResNet-101 7.57 -> "7.6"), so ours must agree to that printed precision, and within 1% of an exact recount where one
# exists (specs.RECOUNTED_MACS).
PAPER_MACS_PRECISION = 0.1e9
RECOUNT_TOLERANCE = 0.01


def macs_match(ours: int, paper: float | None, recount: float | None) -> bool | None:
    """Whether counted multiply-adds agree with the paper (None: the paper gives no number)."""
    if paper is None and recount is None:
        return None
    ok = paper is None or abs(ours - paper) < PAPER_MACS_PRECISION
    return ok and (recount is None or abs(ours - recount) <= RECOUNT_TOLERANCE * recount)


def complexity_table(names: list[str] | None = None) -> str:
    """Markdown table of every registered model: ours beside the paper's numbers, with a match column.

    Parameters must match exactly; multiply-adds as ``macs_match`` says.
    """
    rows = [
        "| model | input | params | paper params | MACs (x10^9) | paper MACs | recount | match |",
        "|---|---|---:|---:|---:|---:|---:|:---:|",
    ]
    for name in names or list_models():
        c = complexity(name)
        recount = specs.RECOUNTED_MACS.get((name, True))
        checks = [c.params == c.paper.params if c.paper.params else None, macs_match(c.macs, c.paper.macs, recount)]
        known = [ok for ok in checks if ok is not None]
        match = "" if not known else ("yes" if all(known) else "NO")
        rows.append(
            f"| {name} | {c.input_size}x{c.input_size} | {c.params:,} | "
            f"{f'{c.paper.params:,}' if c.paper.params else ''} | {c.macs / 1e9:.3f} | "
            f"{f'{c.paper.macs / 1e9:.1f}' if c.paper.macs else ''} | "
            f"{f'{recount / 1e9:.3f}' if recount else ''} | {match} |"
        )
    return "\n".join(rows)
