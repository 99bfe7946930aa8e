"""Fig. 1 and Fig. 6: training (dashed) and test (bold) error of plain and residual CIFAR-10 nets vs iterations.

The paper's findings: the deeper plain nets have *higher training* error (degradation, Fig. 6 left), while the
residual nets improve with depth (Fig. 6 middle).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from ..figures import save_figure
from ..models import specs
from ..train.metrics import read_metrics, series
from .runner import (
    Context,
    RunRecord,
    RunSpec,
    Table,
    claim_sentence,
    fmt,
    judge,
    margin_text,
    margins_note,
    verdict,
    write_results,
)

PLAIN = (20, 32, 44, 56)
RESNET = (20, 32, 44, 56, 110)
# The quick budget trains the four nets that carry the three findings (2 CPU cores, < 30 minutes); depth 32 rather
# than the paper's 56 because deeper nets start slower and 56 loses to 20 by 12.7 points after 1,600 iterations
# (docs, "How the quick budget was chosen"), while 32 costs a third less time.
QUICK_PLAIN = (20, 32)
QUICK_RESNET = (20, 32)
EXTRA = ("plain110", "resnet1202")  # --include: Fig. 6 shows plain-110 (> 60% error) and ResNet-1202 (right panel)


def nets(budget: str, include: tuple[str, ...] = ()) -> list[str]:
    plain, resnet = (QUICK_PLAIN, QUICK_RESNET) if budget == "quick" else (PLAIN, RESNET)
    names = [f"plain{d}" for d in plain] + [f"resnet{d}" for d in resnet]
    return names + [n for n in include if n not in names]


ZOOM_FROM = 0.6  # the figure's bottom row shows iterations from this fraction of the run to its end


def plot(records: list[RunRecord], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    panels = [("plain", [r for r in records if r.model.startswith("plain")]),
              ("ResNet", [r for r in records if r.model.startswith("resnet")])]
    # a family with no run (the paper-length ResNet-20 alone) gets no empty panel: one column per family drawn
    panels = [p for p in panels if p[1]] or panels[:1]
    curves = {r.run_dir: read_metrics(Path(r.run_dir) / "metrics.jsonl") for r in records}
    end = max((row["iter"] for rows in curves.values() for row in rows), default=1)
    start = ZOOM_FROM * end
    # Top row: whole runs. Bottom row: the last 40% zoomed in, where the depths separate by a point or two (the
    # paper's Fig. 6 shows 0-20% error for the same reason).
    fig, axes = plt.subplots(2, len(panels), figsize=(5.5 * len(panels), 7.6), sharey="row", squeeze=False)
    tail: list[float] = []
    for col, (title, rs) in enumerate(panels):
        top, zoom = axes[0][col], axes[1][col]
        for i, r in enumerate(rs):
            rows = curves[r.run_dir]
            depth = r.model.removeprefix("plain").removeprefix("resnet")
            for kind, key, style, width in (("train", "train_error", "--", 1.0), ("eval", "test_error", "-", 2.2)):
                xs, ys = series(rows, kind, key)
                label = f"{title}-{depth}" if kind == "eval" else None
                for ax in (top, zoom):
                    ax.plot(xs, ys, style, color=f"C{i}", linewidth=width, label=label)
                tail += [y for x, y in zip(xs, ys, strict=True) if x >= start]
        top.set_title(f"{title} nets (dashed: training error, bold: test error)", fontsize=10)
        zoom.set_title(f"the last {1 - ZOOM_FROM:.0%} of training, zoomed in", fontsize=10)
        zoom.set_xlim(start, end)
        for ax in (top, zoom):
            ax.set_xlabel("iterations")
            ax.grid(alpha=0.3)
            if rs:
                ax.legend(fontsize=8)
    for row in axes:
        row[0].set_ylabel("error (%)")
    axes[0][0].set_ylim(0, 100)
    if tail:
        axes[1][0].set_ylim(max(0.0, min(tail) - 1), max(tail) + 1)
    return save_figure(fig, out / "degradation.png")


def plot_fig6(records: list[RunRecord], out: Path) -> Path:
    """Fig. 6 (left and middle) in the paper's style: plain nets left, ResNets right, iterations in units of 1e4 on
    x, error (%) from 0 to 20 on y (unless a run ends above it), training error dashed and test error bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("plain-{}", [r for r in records if r.model.startswith("plain")]),
              ("ResNet-{}", [r for r in records if r.model.startswith("resnet")])]
    panels = [p for p in panels if p[1]] or panels[:1]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (name, rs) in zip(axes[0], panels, strict=True):
        ends = []
        for i, r in enumerate(sorted(rs, key=lambda r: _depth(r.model))):
            rows = read_metrics(Path(r.run_dir) / "metrics.jsonl")
            for kind, key, style, width in (("train", "train_error", "--", 0.9), ("eval", "test_error", "-", 2.0)):
                xs, ys = series(rows, kind, key)
                ax.plot([x / 1e4 for x in xs], ys, style, color=f"C{i}", linewidth=width,
                        label=name.format(_depth(r.model)) if kind == "eval" else None)
                ends += ys[-1:]
        ax.set_ylim(0, max([20.0, *(1.15 * e for e in ends)]))  # the paper's 0-20%, unless a run ends above
        ax.set_xlabel("iter. (1e4)")
        ax.set_ylabel("error (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="dashed: training, bold: test", title_fontsize=7)
    return save_figure(fig, out / "fig6.png")


def plot_fig1(records: list[RunRecord], out: Path) -> Path | None:
    """The paper's Fig. 1: plain-20 against plain-56, training error (left) and test error (right) against
    iterations in units of 1e4, as the paper draws it; None unless both runs are finished."""
    by_model = {r.model: r for r in records}
    if not {"plain20", "plain56"} <= set(by_model):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for col, (kind, key, what) in enumerate((("train", "train_error", "training error (%)"),
                                             ("eval", "test_error", "test error (%)"))):
        ends = []
        for model, colour in (("plain56", "C3"), ("plain20", "C0")):
            xs, ys = series(read_metrics(Path(by_model[model].run_dir) / "metrics.jsonl"), kind, key)
            axes[col].plot([x / 1e4 for x in xs], ys, color=colour, linewidth=1.2, label=f"{_depth(model)}-layer")
            ends += ys[-1:]
        axes[col].set_xlabel("iter. (1e4)")
        axes[col].set_ylabel(what)
        axes[col].set_ylim(0, max([20.0, *(1.15 * e for e in ends)]))  # the paper's 0-20%, unless a run ends above
        axes[col].grid(alpha=0.3)
        axes[col].legend(fontsize=8)
    fig.suptitle("Fig. 1: the deeper plain net has higher training error, and thus higher test error", fontsize=10)
    return save_figure(fig, out / "fig1.png")


def _depth(name: str) -> int:
    return int(name.removeprefix("plain").removeprefix("resnet"))


def findings(by_model: dict[str, RunRecord], noise: tuple[float, float] | None = (0.0, 0.0)) -> list[dict[str, Any]]:
    """The paper's three CIFAR findings as margins in percentage points (positive: the paper's direction), each
    judged against ``noise`` = (test, training) error spread of two ResNet-20 seeds at the same budget:

    1. degradation: each deeper plain net ends with higher *training* error than the next shallower one;
    2. residual learning cures it: at every shared depth the ResNet's training error is below the plain net's;
    3. depth helps ResNets: each deeper ResNet ends with lower test error *and* lower training error.
    """
    test_noise, train_noise = noise if noise is not None else (None, None)
    plain = sorted((m for m in by_model if m.startswith("plain")), key=_depth)
    resnet = sorted((m for m in by_model if m.startswith("resnet")), key=_depth)
    err = {m: (r.judged_train_error, r.test_error) for m, r in by_model.items()}
    out: list[dict[str, Any]] = []

    def add(finding: int, what: str, margin: float, noise_: float | None, nets: list[str]) -> None:
        # nets: the margin is nets[0]'s error minus nets[1]'s
        out.append({"finding": finding, **judge(what, margin, noise_), "nets": nets})

    for a, b in itertools.pairwise(plain):
        if err[a][0] is not None and err[b][0] is not None:
            add(1, f"{b} trains worse than {a} (training error, {b} minus {a})", err[b][0] - err[a][0], train_noise,
                [b, a])
    for p in plain:
        r = "resnet" + p.removeprefix("plain")
        if r in err and err[p][0] is not None and err[r][0] is not None:
            add(2, f"{r} trains better than {p} (training error, {p} minus {r})", err[p][0] - err[r][0], train_noise,
                [p, r])
    for a, b in itertools.pairwise(resnet):
        (tr_a, te_a), (tr_b, te_b) = err[a], err[b]
        if None in (tr_a, te_a, tr_b, te_b):
            continue
        test_m, train_m = te_a - te_b, tr_a - tr_b
        verdicts = {verdict(test_m, test_noise), verdict(train_m, train_noise)}
        both = ("reversed" if "reversed" in verdicts else verdicts.pop() if len(verdicts) == 1 else "tie")
        out.append({"finding": 3, "what": f"{b} beats {a} (test and training error, {a} minus {b})",
                    "margin": test_m, "train_margin": train_m, "noise": test_noise, "train_noise": train_noise,
                    "verdict": both, "holds": both == "shown", "nets": [a, b]})
    return out


def finding_lines(found: list[dict[str, Any]]) -> list[str]:
    lines = []
    for f in found:
        margins = margin_text(f["margin"], f["noise"]) + " points"
        if "train_margin" in f:
            margins = (f"test {margin_text(f['margin'], f['noise'])}, training "
                       f"{margin_text(f['train_margin'], f['train_noise'])} points")
        lines.append(claim_sentence(f"finding {f['finding']}: {f['what']}", margins, f["verdict"]))
    return lines


def run(ctx: Context, include: tuple[str, ...] = ()) -> Path:
    records = ctx.train([RunSpec(name) for name in nets(ctx.budget.name, include)])
    fig = plot(records, ctx.out)
    fig1 = plot_fig1(records, ctx.out)
    fig6 = plot_fig6(records, ctx.out)
    by_model = {r.model: r for r in records}
    table = Table(["net", "params", "training error (%)", "test error (%)", "paper test error (%)"], [],
                  [False, True, True, True, True])
    for r in records:
        paper = specs.PAPER.get(r.model)
        paper_err = fmt(paper.cifar10_error) if paper and paper.cifar10_error else ""
        if r.model == "plain110":
            paper_err = "> 60"
        table.rows.append([r.model, f"{r.params:,}", fmt(r.judged_train_error), fmt(r.test_error), paper_err])
    lines = table.markdown()
    noise = ctx.noise
    found = findings(by_model, noise)
    running = (f"the mean over the last {ctx.config(RunSpec('resnet20')).run.log_interval} iterations (augmented "
               "batches, as the paper's dashed curves)")
    measured = [r.final_train_error is not None for r in records]
    how = ("the final model's error on every training image, un-augmented, in fp32" if all(measured) else
           running if not any(measured) else f"the final model's error on every training image (un-augmented, fp32) "
           f"where the run measured it, else {running}")
    lines += ["", f"Training error is {how}; test error is the 10k test set at the end. The paper's column is "
              "Table 6 (64k iterations, official CIFAR-10 files).", ""]
    spread = f"test {noise[0]:.2f}, training {noise[1]:.2f} points" if noise else None
    lines += [margins_note(spread), "", *finding_lines(found)]
    if ctx.budget.name == "quick" and (ctx.runs_dir / ctx.data_name / "medium").is_dir():  # a pointer, where it leads
        medium = (f"The nine nets of Fig. 6 at 6,400 iterations (the medium budget): results/{ctx.data_name}/"
                  "degradation-medium/results.md, from the committed runs where they exist (`resnetlab reproduce "
                  f"degradation --budget medium --data {ctx.data} --no-train` renders it in seconds).")
        lines += ["", medium]
        print(medium, flush=True)
    write_results(ctx, "Degradation of plain nets and its cure (Fig. 1, Fig. 6)", "\n".join(lines), records,
                  {"findings": found, "tables": [table.as_dict()],
                   "claim_lines": [margins_note(spread), "", *finding_lines(found)]},
                  [fig, fig6, *([fig1] if fig1 else [])])
    return ctx.out
