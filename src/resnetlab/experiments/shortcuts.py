"""Shortcut options A/B/C on a CIFAR ResNet: the CIFAR analogue of Table 3 (which compares them on ImageNet).

A: zero-padding identity (no parameters); B: projections only where dimensions change; C: every shortcut projects.
The paper finds B slightly better than A and C marginally better than B, and keeps A/B for economy.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from ..models import model_info, specs
from .runner import Context, RunSpec, Table, fmt, judge, judged_lines, write_results

OPTIONS = ("A", "B", "C")


def paper_numbers() -> dict[str, specs.PaperNumbers | None]:
    """ResNet-34's numbers for each option (Table 3; B is the registry's default for ImageNet ResNets)."""
    return {o: specs.paper_numbers("resnet34", None if o == "B" else o) for o in OPTIONS}


def paper_note() -> str:
    """The paper's comparison of the options, its numbers read from ``specs``."""
    errors = ", ".join(f"{o} {fmt(p.top1_10crop)}" for o, p in paper_numbers().items() if p)
    return (f"The paper's numbers are ImageNet 10-crop top-1 errors of ResNet-34 (Table 3): {errors}, i.e. small "
            "differences; projection shortcuts are not essential for addressing degradation.")


def comparisons(test_error: dict[str, float], noise: float | None) -> list[dict[str, Any]]:
    """Table 3's ordering (A > B > C in error) as test-error margins between neighbouring options, positive in the
    paper's direction, each judged against ``noise`` (two ResNet-20 seeds' test spread; None: only leaning)."""
    present = [o for o in OPTIONS if test_error.get(o) is not None]
    return [judge(f"{b} below {a} (test error, {a} minus {b}), seed 0", test_error[a] - test_error[b], noise)
            for a, b in itertools.pairwise(present)]


def run(ctx: Context, model: str = "resnet20", seeds: int | None = None) -> Path:
    n_seeds = seeds or 1
    # Option A is the CIFAR nets' default: its runs are the ones the other experiments train (and reuse).
    default = "A" if model_info(model).family == "cifar" else "B"
    specs_ = [RunSpec(model, seed, (("shortcut", o),) if o != default else ()) for o in OPTIONS
              for seed in range(n_seeds)]
    records = ctx.train(specs_)
    paper = paper_numbers()
    table = Table(["option", "params", "training error (%)", "test error (%)", "paper: ResNet-34 ImageNet top-1 (%)"],
                  [], [False, True, True, True, True])
    for o in OPTIONS:
        for r in [r for r in records if r.options.get("shortcut", default) == o]:
            p = paper[o]
            table.rows.append([f"{o} (seed {r.seed})", f"{r.params:,}", fmt(r.judged_train_error), fmt(r.test_error),
                               fmt(p.top1_10crop) if p else ""])
    lines = table.markdown()
    noise = ctx.noise[0] if ctx.noise else None
    found = comparisons({r.options.get("shortcut", default): r.test_error for r in records if r.seed == 0}, noise)
    claims = judged_lines(found, None if noise is None else f"test {noise:.2f} points")
    lines += claims
    lines += ["", f"{model} on CIFAR-10 with each shortcut option. {paper_note()}"]
    write_results(ctx, f"Shortcut options A/B/C on {model} (CIFAR analogue of Table 3)", "\n".join(lines), records,
                  {"comparisons": found, "tables": [table.as_dict()], "claim_lines": claims[1:]})
    return ctx.out
