"""Table 6: CIFAR-10 test error of ResNet-20/32/44/56/110 (and 1202), several seeds per depth.

Reported as the paper does for ResNet-110: best, and mean +- std over the seeds, beside the paper's column.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path
from typing import Any

from ..models import specs
from .runner import Context, RunRecord, RunSpec, Table, fmt, judge, judged_lines, write_results

DEPTHS = (20, 32, 44, 56, 110)
QUICK_DEPTHS = (20, 32, 44, 56)  # ResNet-110 at 2 seeds does not fit in 30 CPU minutes


def depths(budget: str, include_1202: bool = False) -> tuple[int, ...]:
    base = QUICK_DEPTHS if budget == "quick" else DEPTHS
    return base + ((1202,) if include_1202 else ())


def summarise(records: list[RunRecord]) -> list[dict[str, object]]:
    rows = []
    for model in dict.fromkeys(r.model for r in records):
        errs = [r.test_error for r in records if r.model == model and r.test_error is not None]
        paper = specs.PAPER.get(model)
        rows.append({
            "model": model,
            "params": next(r.params for r in records if r.model == model),
            "seeds": len(errs),
            "best": min(errs) if errs else None,
            "mean": statistics.fmean(errs) if errs else None,
            "std": statistics.pstdev(errs) if len(errs) > 1 else None,
            "paper": paper.cifar10_error if paper else None,
            "paper_mean": paper.cifar10_error_mean if paper else None,
            "public": {name: rep["errors"].get(model) for name, rep in specs.PUBLIC_REPRODUCTIONS.items()},
        })
    return rows


def depth_orderings(rows: list[dict[str, Any]], noise: float | None) -> list[dict[str, Any]]:
    """The claim of Table 6, test error falls with depth, on the mean over the seeds run: each step up, and the
    shallowest net against the deepest; a margin within ``noise`` (two ResNet-20 seeds' test spread) is a tie."""
    # by depth; a depth with no finished run is left out, so its neighbours are compared across it (the names say so)
    means = sorted(((r["model"], r["mean"]) for r in rows if r["mean"] is not None),
                   key=lambda m: int(m[0].removeprefix("resnet")))
    pairs = list(itertools.pairwise(means)) + ([(means[0], means[-1])] if len(means) > 2 else [])
    return [judge(f"{b} below {a} (mean test error, {a} minus {b})", err_a - err_b, noise)
            for (a, err_a), (b, err_b) in pairs]


def run(ctx: Context, include_1202: bool = False, seeds: int | None = None) -> Path:
    def n_seeds(model: str) -> int:
        return seeds or max(ctx.budget.seeds, ctx.budget.more_seeds.get(model, 0))

    specs_ = [RunSpec(m, seed) for m in (f"resnet{d}" for d in depths(ctx.budget.name, include_1202))
              for seed in range(n_seeds(m))]
    records = ctx.train(specs_)
    rows = summarise(records)
    public = list(specs.PUBLIC_REPRODUCTIONS)
    table = Table(["net", "params", "seeds", "best (%)", "mean ± std (%)", "paper (%)",
                   *(name.split("/")[0] for name in public)], [],  # the owners; the notes name the repositories
                  [False] + [True] * (5 + len(public)))
    for r in rows:
        mean = f"{fmt(r['mean'])} ± {fmt(r['std'])}" if r["std"] is not None else fmt(r["mean"])  # type: ignore[arg-type]
        paper = fmt(r["paper"]) + (f" ({r['paper_mean']})" if r["paper_mean"] else "")  # type: ignore[arg-type]
        others = [fmt(r["public"].get(name)) for name in public]  # type: ignore[attr-defined]
        table.rows.append([str(r["model"]), f"{r['params']:,}", str(r["seeds"]), fmt(r["best"]), mean, paper,  # type: ignore[arg-type]
                           *others])
    lines = table.markdown()
    noise = ctx.noise[0] if ctx.noise else None
    order = depth_orderings(rows, noise)
    claims = judged_lines(order, None if noise is None else f"test {noise:.2f} points")
    lines += claims
    others = ", ".join(f"{k} {v}" for k, v in specs.TABLE6_OTHERS.items())
    lines += ["", "Test error on the 10k test set at the end of training; the checkpoint is the last one (never "
              "chosen on the test set). std is the population std over seeds. The paper's column: Table 6 (best of "
              f"5 runs for ResNet-110, with mean ± std in brackets). Other methods in Table 6: {others}. Public "
              "reproductions on the official CIFAR-10 files: "
              + "; ".join(f"{name}, {rep['how']}" for name, rep in specs.PUBLIC_REPRODUCTIONS.items()) + "."]
    write_results(ctx, "CIFAR-10 test error by depth (Table 6)", "\n".join(lines), records,
                  {"table": rows, "orderings": order, "tables": [table.as_dict()], "claim_lines": claims[1:]})
    return ctx.out
