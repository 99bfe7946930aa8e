"""Fig. 1 and Fig. 6: training (dashed) and test (bold) error of plain and residual CIFAR-10 nets vs iterations.

The paper's findings: the deeper plain nets have *higher training* error (degradation, Fig. 6 left), while the
residual nets improve with depth (Fig. 6 middle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models import specs
from ..train.metrics import read_metrics, series
from .runner import Context, RunRecord, RunSpec, fmt, write_results

PLAIN = (20, 32, 44, 56)
RESNET = (20, 32, 44, 56, 110)
# The quick budget trains the four nets that carry both findings (2 CPU cores, < 30 minutes).
QUICK_PLAIN = (20, 56)
QUICK_RESNET = (20, 56)
EXTRA = ("plain110", "resnet1202")  # --include: Fig. 6 shows plain-110 (> 60% error) and ResNet-1202 (right panel)
FINDING_MARGIN = 5.0  # points: the bar for "shows the finding"


def nets(budget: str, include: tuple[str, ...] = ()) -> list[str]:
    plain, resnet = (QUICK_PLAIN, QUICK_RESNET) if budget == "quick" else (PLAIN, RESNET)
    names = [f"plain{d}" for d in plain] + [f"resnet{d}" for d in resnet]
    return names + [n for n in include if n not in names]


def plot(records: list[RunRecord], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data.cache import atomic_write

    panels = [("plain", [r for r in records if r.model.startswith("plain")]),
              ("ResNet", [r for r in records if r.model.startswith("resnet")])]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (title, rs) in zip(axes, panels, strict=True):
        for i, r in enumerate(rs):
            rows = read_metrics(Path(r.run_dir) / "metrics.jsonl")
            depth = r.model.removeprefix("plain").removeprefix("resnet")
            xs, ys = series(rows, "train", "train_error")
            ax.plot(xs, ys, "--", color=f"C{i}", linewidth=1)
            xs, ys = series(rows, "eval", "test_error")
            ax.plot(xs, ys, "-", color=f"C{i}", linewidth=2.2, label=f"{title}-{depth}")
        ax.set_title(f"{title} nets (dashed: training error, bold: test error)", fontsize=10)
        ax.set_xlabel("iterations")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(0, 100)
    fig.tight_layout()
    path = out / "degradation.png"
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
    return path


def findings(by_model: dict[str, RunRecord]) -> list[dict[str, Any]]:
    """The two comparisons the paper's Fig. 6 makes, with our margins (training error, percentage points)."""
    out = []
    pairs = [("plain56", "plain20", "deeper plain net trains worse (degradation): plain-56 minus plain-20"),
             ("plain56", "resnet56", "residual learning fixes it: plain-56 minus ResNet-56")]
    for worse, better, what in pairs:
        if worse in by_model and better in by_model:
            a, b = by_model[worse].train_error, by_model[better].train_error
            if a is not None and b is not None:
                out.append({"finding": what, "margin": a - b, "holds": a - b >= FINDING_MARGIN})
    return out


def run(ctx: Context, include: tuple[str, ...] = ()) -> Path:
    records = ctx.train([RunSpec(name) for name in nets(ctx.budget.name, include)])
    fig = plot(records, ctx.out)
    by_model = {r.model: r for r in records}
    lines = ["| net | params | training error (%) | test error (%) | paper test error (%) |",
             "|---|---:|---:|---:|---:|"]
    for r in records:
        paper = specs.PAPER.get(r.model)
        paper_err = fmt(paper.cifar10_error) if paper and paper.cifar10_error else ""
        if r.model == "plain110":
            paper_err = "> 60"
        lines.append(f"| {r.model} | {r.params:,} | {fmt(r.train_error)} | {fmt(r.test_error)} | {paper_err} |")
    found = findings(by_model)
    lines += ["", f"Training error is the mean over the last {ctx.config(RunSpec('resnet20')).log_interval} "
              "iterations (augmented batches, as the paper's dashed curves); test error is the 10k test set at "
              "the end. The paper's column is Table 6 (64k iterations, official CIFAR-10 files).", ""]
    for f in found:
        lines.append(f"- {f['finding']}: **{f['margin']:+.1f} points** "
                     f"({'shown' if f['holds'] else 'NOT shown'}: the bar is {FINDING_MARGIN:.0f} points)")
    write_results(ctx, "Degradation of plain nets and its cure (Fig. 1, Fig. 6)", "\n".join(lines), records,
                  {"findings": found}, [fig])
    return ctx.out
