"""Fig. 7: standard deviation of every 3x3 layer's response (its BN output, before ReLU or the addition) on the
CIFAR-10 test set, for plain-20/56 and ResNet-20/56/110; top panel in layer order, bottom panel sorted descending.

The paper's finding: ResNets respond less than plain nets, and deeper ResNets less still (residual functions are
closer to zero than non-residual ones).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch
from torch import Tensor, nn

from ..data import normalize
from ..figures import save_figure
from ..models.responses import record_responses
from .runner import Context, RunRecord, RunSpec, Table, fmt, judge, judged_lines, run_model, write_results

NETS = ("plain20", "plain56", "resnet20", "resnet56", "resnet110")


@torch.no_grad()
def layer_response_stds(model: nn.Module, images: Tensor, mean: Tensor, std: Tensor | None,
                        batch_size: int = 500) -> tuple[list[str], list[float]]:
    """Per-layer std of the 3x3 layers' BN outputs over all test images (model in eval mode)."""
    model.eval()
    with record_responses(model) as stats:
        for s in range(0, images.shape[0], batch_size):
            model(normalize(images[s:s + batch_size], mean, std))
    return stats.names, stats.std()


def plot(curves: dict[str, list[float]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7))
    for i, (name, stds) in enumerate(curves.items()):
        style = "--" if name.startswith("plain") else "-"
        xs = range(1, len(stds) + 1)
        top.plot(xs, stds, style, color=f"C{i}", label=name, linewidth=1.4)
        bottom.plot(xs, sorted(stds, reverse=True), style, color=f"C{i}", label=name, linewidth=1.4)
    top.set_xlabel("layer index (original)")
    bottom.set_xlabel("layer index (sorted by magnitude)")
    for ax in (top, bottom):
        ax.set_ylabel("std")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    top.set_title("std of 3x3 layer responses (BN output, before ReLU/addition), CIFAR-10 test set", fontsize=10)
    return save_figure(fig, out / "responses.png")


def orderings(mean_std: dict[str, float], noise: float | None = None) -> list[dict]:
    """Fig. 7's claims as margins of the mean std (positive in the paper's direction), for the nets present, each
    judged against ``noise``, the spread of the mean std of two ResNet-20 seeds (None: not measured, only leaning)."""
    pairs = [(f"plain{d}", f"resnet{d}", f"resnet{d} responds less than plain{d}") for d in (20, 56)]
    pairs += [("resnet20", "resnet56", "resnet56 responds less than resnet20"),
              ("resnet56", "resnet110", "resnet110 responds less than resnet56")]
    return [judge(f"{what} (mean std, {higher} minus {lower})", round(mean_std[higher] - mean_std[lower], 3), noise,
                  decimals=3) for higher, lower, what in pairs if higher in mean_std and lower in mean_std]


def run(ctx: Context) -> Path:
    # where the budget's noise is measured (two finished ResNet-20 seeds), seed 1 measures this figure's noise too
    noise_run = [RunSpec("resnet20", 1)] if ctx.noise is not None else []
    records = ctx.train([RunSpec(name) for name in NETS] + noise_run)
    bundle = ctx.bundle(ctx.config(RunSpec(NETS[0])))
    curves: dict[str, list[float]] = {}
    layers: dict[str, list[str]] = {}
    seed1: list[float] | None = None
    for r in records:
        model, weights = run_model(Path(r.run_dir))
        names, stds = layer_response_stds(model, bundle.test_x, weights.mean, weights.std)
        if r.seed == 0:
            curves[r.model], layers[r.model] = stds, names
        else:
            seed1 = stds
    noise, noise_text = None, None
    if seed1 is not None and "resnet20" in curves:
        seed0_mean, seed1_mean = statistics.fmean(curves["resnet20"]), statistics.fmean(seed1)
        noise = round(abs(seed0_mean - seed1_mean), 3)
        noise_text = f"{noise:.3f}: their mean std, {seed0_mean:.3f} / {seed1_mean:.3f}"
    fig = plot(curves, ctx.out)
    table = Table(["net", "3x3 layers", "mean std", "median std", "test error (%)"], [],
                  [False, True, True, True, True])
    by_model: dict[str, RunRecord] = {r.model: r for r in records if r.seed == 0}
    for name, stds in curves.items():
        table.rows.append([name, str(len(stds)), f"{statistics.fmean(stds):.3f}", f"{statistics.median(stds):.3f}",
                           fmt(by_model[name].test_error)])
    lines = table.markdown()
    order = orderings({name: statistics.fmean(stds) for name, stds in curves.items()}, noise)
    claims = judged_lines(order, noise_text, decimals=3, unit="")
    lines += claims
    lines += ["", "Responses are the outputs of the BN after each 3x3 conv (before ReLU, and before the addition in "
              "residual blocks), in eval mode over the whole test set; std over images, channels and positions. "
              "The paper (Fig. 7): ResNets respond less than plain nets, deeper ResNets less still."]
    write_results(ctx, "Layer responses (Fig. 7)", "\n".join(lines), records,
                  {"responses": {k: {"layers": layers[k], "std": v} for k, v in curves.items()},
                   "orderings": order, "noise": noise, "tables": [table.as_dict()], "claim_lines": claims[1:]},
                  [fig])
    return ctx.out
