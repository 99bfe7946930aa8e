"""Helpers shared by the model tests and by ``tests/make_expected.py`` (which regenerates the stored outputs)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

import resnetlab

EXPECTED_FILE = Path(__file__).parent / "expected" / "model_outputs.pt"
# Built and run in seconds each; the rest are marked slow (still run in CI).
BIG = {"resnet1202", "preact_resnet1001", "resnet101", "resnet152", "plain101", "plain152",
       "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"}


def seeded_input(name: str, batch: int = 2) -> Tensor:
    size = resnetlab.model_info(name).input_size
    g = torch.Generator().manual_seed(1234)
    return torch.randn(batch, 3, size, size, generator=g)


@torch.no_grad()
def calibrate_bn(model: nn.Module, x: Tensor) -> nn.Module:
    """Set BN running statistics to those of ``x`` (one cumulative-average pass), then eval mode.

    At initialisation BN's running statistics are (0, 1): in eval mode a very deep net's residual sums then grow
    without bound (ResNet-1202 overflows), so tests compare eval outputs after this calibration.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()(x)
    return model.eval()


def seeded_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return resnetlab.create_model(name)


def expected_output(name: str) -> Tensor:
    """Eval-mode output of the seeded model on the seeded input after BN calibration, in float64: CPUs with other
    vector units (AVX2, AVX-512) sum fp32 convolutions in other orders, and a deep plain net amplifies those
    rounding differences past any fixed fp32 tolerance (plain-152's fp32 outputs on two such CPUs differed by about
    their largest value); in float64 they stay far below the test's tolerance."""
    model = seeded_model(name).double()
    x = seeded_input(name).double()
    calibrate_bn(model, x)
    with torch.no_grad():
        return model(x)
