"""Layer responses (Fig. 7): the output of the BN that follows each 3x3 conv, before ReLU or the addition.

Each module declares which of its own BN children follow a 3x3 conv (``response_bns``: names relative to the
module), so no model needs editing; forward hooks on those BN modules read the responses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def response_modules(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """(name, BN) for every BN applied to a 3x3 conv's output, in layer order.

    Pre-activation nets apply BN *before* their convs: they declare no responses and this returns [] for them.
    """
    modules = dict(model.named_modules())
    found = []
    for name, m in model.named_modules():
        for child in getattr(m, "response_bns", ()):
            full = f"{name}.{child}" if name else child
            found.append((full, modules[full]))
    return found


class ResponseStats:
    """Running per-layer statistics of responses: std over all elements (N, C, H, W) of each layer, as Fig. 7 plots."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.count = dict.fromkeys(names, 0)
        self.sum = dict.fromkeys(names, 0.0)
        self.sumsq = dict.fromkeys(names, 0.0)

    def update(self, name: str, out: Tensor) -> None:
        x = out.detach().float()
        self.count[name] += x.numel()
        # float32 sums over each H x W plane (at most 1,024 elements), float64 over the millions of planes: as exact
        # as casting the whole tensor to float64 to 1e-9, and 3.5x faster (the casts were most of Fig. 7's time)
        self.sum[name] += x.sum(dim=(2, 3)).double().sum().item()
        self.sumsq[name] += x.square().sum(dim=(2, 3)).double().sum().item()

    def std(self) -> list[float]:
        out = []
        for n in self.names:
            mean = self.sum[n] / self.count[n]
            out.append(max(self.sumsq[n] / self.count[n] - mean * mean, 0.0) ** 0.5)
        return out


@contextmanager
def record_responses(model: nn.Module) -> Iterator[ResponseStats]:
    """``with record_responses(model) as stats: model(x)...``; then ``stats.std()`` per 3x3 layer, in layer order.

    Statistics are taken inside the hook, before any later in-place op can touch the tensor.
    """
    modules = response_modules(model)
    stats = ResponseStats([n for n, _ in modules])
    handles = [m.register_forward_hook(_Recorder(stats, n)) for n, m in modules]
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()


class _Recorder:
    def __init__(self, stats: ResponseStats, name: str) -> None:
        self.stats, self.name = stats, name

    @torch.no_grad()
    def __call__(self, _m: nn.Module, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        self.stats.update(self.name, out)
