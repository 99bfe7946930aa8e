"""ImageNet Tables 2 and 3 (and Fig. 4): plain vs residual 18/34-layer nets; shortcut options and deeper ResNets.

Every run uses the ``imagenet_paper`` recipe (Sec. 3.4) on an ImageNet-layout folder (``--data ROOT`` with
``train/<class>`` and ``val/<class>``), streamed from disk. After training, each net's final checkpoint is tested with
the paper's 10-crop protocol on the validation set (the numbers of Tables 2 and 3); the curves of Fig. 4 show the
training error (thin) and the center-crop validation error (bold) during training.

Budgets, as fractions of the 600,000-iteration schedule: smoke (6 iterations: checks the pipeline), quick (6,000
iterations, 1%: a GPU-hours sanity run, far from converged), paper (the full schedule: GPU-weeks per net).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .. import io
from ..errors import ResNetLabError
from ..figures import save_figure
from ..models import specs
from ..train.metrics import read_metrics, series
from .runner import Budget, Context, RunRecord, RunSpec, fmt, write_results

IMAGENET_ITERS = 600_000  # Sec. 3.4: "up to 60 x 10^4 iterations"
# The shared budgets' names, ImageNet's scale: smoke keeps one checkpoint per run (ResNet-152's weights and momentum
# are ~0.5 GB), quick evaluates every 1,000 iterations (a center-crop pass over the 50k validation images).
IMAGENET_BUDGETS = {
    "smoke": Budget("smoke", 6 / IMAGENET_ITERS, {"eval.interval": 3, "run.log_interval": 3, "optim.batch_size": 32,
                                                   "run.keep_checkpoints": 1}),
    "quick": Budget("quick", 6_000 / IMAGENET_ITERS, {"eval.interval": 1_000, "run.log_interval": 50}),
    "paper": Budget("paper", 1.0, {}),
}
OPTION_A = (("shortcut", "A"),)  # Table 2's ResNet-18/34 (zero-padding shortcuts: no extra parameters)
TABLE2 = [RunSpec("plain18"), RunSpec("resnet18", 0, OPTION_A), RunSpec("plain34"), RunSpec("resnet34", 0, OPTION_A)]
TABLE3 = [RunSpec("plain34"), RunSpec("resnet34", 0, OPTION_A), RunSpec("resnet34"),
          RunSpec("resnet34", 0, (("shortcut", "C"),)), RunSpec("resnet50"), RunSpec("resnet101"), RunSpec("resnet152")]


@dataclass
class ImageNetContext(Context):
    """The shared runner, with the ImageNet recipe and schedule."""

    recipe: ClassVar[str] = "imagenet_paper"
    schedule_iters: ClassVar[int] = IMAGENET_ITERS


def imagenet_context(ctx: Context) -> ImageNetContext:
    if not Path(ctx.data).is_dir():
        raise ResNetLabError(f"{ctx.experiment} trains on an ImageNet-layout folder, not {ctx.data!r}: pass --data "
                             "ROOT with ROOT/train/<class>/* and ROOT/val/<class>/*")
    values = {f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx)}
    values["budget"] = IMAGENET_BUDGETS[ctx.budget.name]
    return ImageNetContext(**values)


def option(spec: RunSpec) -> str:
    if spec.model.startswith("plain"):
        return ""
    return dict(spec.model_kwargs).get("shortcut", "B")


def paper_numbers(spec: RunSpec) -> specs.PaperNumbers | None:
    """Tables 2/3's 10-crop errors for this net and shortcut option (ResNet-18's, from Table 2, are option A's)."""
    if spec.model == "resnet18":
        return specs.PAPER["resnet18"]
    return specs.PAPER_VARIANTS.get((spec.model, option(spec))) or specs.PAPER.get(spec.model)


def _top1(spec: RunSpec) -> float:
    p = paper_numbers(spec)
    assert p is not None and p.top1_10crop is not None, spec
    return p.top1_10crop


def table2_note() -> str:
    """What the paper's Table 2 shows, its numbers read from ``specs`` (10-crop top-1 validation error)."""
    plain18, resnet18, plain34, resnet34 = (_top1(s) for s in TABLE2)
    return (f"The paper (Table 2, 10-crop top-1): plain-34 has higher validation error than plain-18 ({fmt(plain34)} "
            f"vs {fmt(plain18)}; Fig. 4: higher training error too, the degradation); ResNet-34 is "
            f"{fmt(plain34 - resnet34)} points better than plain-34 and {fmt(resnet18 - resnet34)} points better than "
            f"ResNet-18 ({fmt(resnet34)} vs {fmt(resnet18)}; option A shortcuts, no extra parameters).")


def table3_note() -> str:
    """What the paper's Table 3 shows, its numbers read from ``specs`` (10-crop top-1 validation error)."""
    options = " / ".join(f"{option(s)} {fmt(_top1(s))}" for s in TABLE3 if s.model == "resnet34")
    deeper = ", ".join(fmt(_top1(s)) for s in TABLE3 if s.model in ("resnet50", "resnet101", "resnet152"))
    vgg16 = specs.PAPER["vgg16"].top1_10crop
    return (f"The paper's Table 3 (10-crop top-1 validation error): {options} for ResNet-34, i.e. projection "
            f"shortcuts are not essential; ResNet-50/101/152 (bottleneck, option B) improve with depth: {deeper}. "
            f"VGG-16 ({fmt(vgg16)}) can be added with --include vgg16.")


def ten_crop(ctx: ImageNetContext, spec: RunSpec, record: RunRecord) -> dict[str, float]:
    """10-crop top-1/top-5 validation error (%) of the run's final checkpoint; cached beside the run."""
    from ..train.device import place
    from ..train.protocols import evaluate_stream
    from ..weights import load

    run_dir = Path(record.run_dir)
    checkpoint = json.loads((run_dir / "summary.json").read_text())["checkpoint"]
    cache = run_dir / "eval-10crop.json"
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("checkpoint") == checkpoint:
            return saved
    cfg = ctx.config(spec)
    data = ctx.bundle(cfg)
    placement = place(cfg)  # the device and the evaluation precision, "auto" resolved once
    model = load(run_dir / checkpoint).model.to(placement.device)
    r = evaluate_stream(model, data, "val", "10crop", batch_size=max(1, cfg.eval.batch_size // 10),
                        device=placement.device, precision=placement.eval_precision, chunk=cfg.eval.batch_size,
                        progress=ctx.progress)
    out = {"checkpoint": checkpoint, "top1_10crop": r.top1_error, "top5_10crop": r.top5_error, "images": r.count}
    io.atomic_write(cache, lambda f: f.write(json.dumps(out).encode()))
    return out


def plot(panels: list[tuple[str, list[RunRecord]]], out: Path, name: str) -> Path:
    """Fig. 4's style: thin training error, bold center-crop validation error, one colour per net."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), sharey=True, squeeze=False)
    for ax, (title, records) in zip(axes[0], panels, strict=True):
        for i, r in enumerate(records):
            rows = read_metrics(Path(r.run_dir) / "metrics.jsonl")
            xs, ys = series(rows, "train", "train_error")
            ax.plot(xs, ys, "-", color=f"C{i}", linewidth=0.8)
            xs, ys = series(rows, "eval", "val_error")
            ax.plot(xs, ys, "-", color=f"C{i}", linewidth=2.4, label=r.label)
        ax.set_title(f"{title} (thin: training, bold: validation)", fontsize=10)
        ax.set_xlabel("iterations")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("top-1 error (%)")
    axes[0][0].set_ylim(0, 100)
    return save_figure(fig, out / name)


def _table(ctx: ImageNetContext, run_specs: list[RunSpec], records: list[RunRecord]) -> tuple[list[str], list[dict]]:
    lines = ["| net | shortcut | params | training error (%) | val error, center (%) | val top-1, 10-crop (%) | "
             "val top-5, 10-crop (%) | paper top-1, 10-crop (%) | paper top-5, 10-crop (%) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    evals = []
    for spec, r in zip(run_specs, records, strict=True):
        e = ten_crop(ctx, spec, r)
        evals.append({"label": r.label, **e})
        p = paper_numbers(spec)
        lines.append(f"| {spec.model} | {option(spec)} | {r.params:,} | {fmt(r.train_error)} | {fmt(r.val_error)} | "
                     f"{fmt(e['top1_10crop'])} | {fmt(e['top5_10crop'])} | {fmt(p.top1_10crop if p else None)} | "
                     f"{fmt(p.top5_10crop if p else None)} |")
    return lines, evals


def findings(errors: dict[str, float | None], pairs: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """(worse, better, what): the paper finds ``worse`` has the higher error; margin = worse - better (points)."""
    out = []
    for worse, better, what in pairs:
        a, b = errors.get(worse), errors.get(better)
        if a is not None and b is not None:
            out.append({"finding": what, "margin": a - b, "holds": a > b})
    return out


def _findings_md(found: list[dict[str, Any]]) -> list[str]:
    return [f"- {f['finding']}: **{f['margin']:+.2f} points** ({'as in the paper' if f['holds'] else 'NOT shown'})"
            for f in found]


def run_table2(ctx: Context, include: tuple[str, ...] = ()) -> Path:
    """Table 2 and Fig. 4: plain-18/34 vs ResNet-18/34 (option A)."""
    ictx = imagenet_context(ctx)
    run_specs = TABLE2 + [RunSpec(n) for n in include if n not in {s.model for s in TABLE2}]
    records = ictx.train(run_specs)
    figure = plot([("plain", [r for r in records if r.model.startswith("plain")]),
                   ("ResNet", [r for r in records if not r.model.startswith("plain")])], ictx.out, "fig4.png")
    lines, evals = _table(ictx, run_specs, records)
    train = {r.label: r.train_error for r in records}
    tencrop = {e["label"]: e["top1_10crop"] for e in evals}
    found = findings(train, [("plain34", "plain18", "degradation: plain-34 trains worse than plain-18 (training "
                              "error, plain-34 minus plain-18)")])
    found += findings(tencrop, [("plain34", "resnet34-shortcutA", "residual learning: ResNet-34 beats plain-34 "
                                 "(10-crop top-1, plain-34 minus ResNet-34)"),
                                ("resnet18-shortcutA", "resnet34-shortcutA", "depth helps ResNets: ResNet-34 beats "
                                 "ResNet-18 (10-crop top-1, ResNet-18 minus ResNet-34)")])
    lines += ["", "Training error: mean over the last logging interval (augmented batches). Validation: the folder's "
              "val/ tree; center crop during training (Fig. 4's bold curves), 10-crop at the end (Table 2). "
              + table2_note(), ""]
    lines += _findings_md(found)
    write_results(ictx, "ImageNet: plain vs residual networks (Table 2, Fig. 4)", "\n".join(lines), records,
                  {"ten_crop": evals, "findings": found}, [figure])
    return ictx.out


def run_table3(ctx: Context, include: tuple[str, ...] = ()) -> Path:
    """Table 3: ResNet-34 with shortcut options A/B/C, ResNet-50/101/152 (option B), against plain-34."""
    ictx = imagenet_context(ctx)
    run_specs = TABLE3 + [RunSpec(n) for n in include if n not in {s.model for s in TABLE3}]
    records = ictx.train(run_specs)
    figure = plot([("Table 3 nets", records)], ictx.out, "table3.png")
    lines, evals = _table(ictx, run_specs, records)
    tencrop = {e["label"]: e["top1_10crop"] for e in evals}
    found = findings(tencrop, [("resnet34-shortcutA", "resnet34", "option B beats A (10-crop top-1, A minus B)"),
                               ("resnet34", "resnet34-shortcutC", "option C marginally beats B (B minus C)"),
                               ("resnet34", "resnet50", "ResNet-50 beats ResNet-34 (34 minus 50)"),
                               ("resnet50", "resnet101", "ResNet-101 beats ResNet-50 (50 minus 101)"),
                               ("resnet101", "resnet152", "ResNet-152 beats ResNet-101 (101 minus 152)")])
    lines += ["", table3_note(), ""]
    lines += _findings_md(found)
    write_results(ictx, "ImageNet: shortcut options and deeper ResNets (Table 3)", "\n".join(lines), records,
                  {"ten_crop": evals, "findings": found}, [figure])
    return ictx.out
