"""Pre-activation ResNets for CIFAR (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Unit: BN -> ReLU -> conv -> BN -> ReLU -> conv, then add; nothing after the addition; one extra BN-ReLU before
pooling. Where a unit changes dimensions, the shortcut takes the pre-activated input (BN-ReLU is shared by both paths,
as in the authors' code), so the projection is a bare 1x1 conv.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from . import specs
from .layers import ClassifierMixin, conv1x1, conv3x3, init_weights, make_shortcut, run_stage


class PreActBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1, *, shortcut: str = "B",
                 stride_in_1x1: bool = True) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv3x3(in_ch, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.relu = nn.ReLU(inplace=False)  # its input is also the shortcut's: must not be overwritten
        self.downsample = make_shortcut(shortcut, in_ch, width, stride, bn=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity


class PreActBottleneck(nn.Module):
    expansion = specs.BOTTLENECK_EXPANSION

    def __init__(self, in_ch: int, width: int, stride: int = 1, *, shortcut: str = "B",
                 stride_in_1x1: bool = True) -> None:
        super().__init__()
        out_ch = width * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv1x1(in_ch, width, s1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, s3)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_ch)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = make_shortcut(shortcut, in_ch, out_ch, stride, bn=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + identity


class PreActResNet(ClassifierMixin, nn.Module):
    """CIFAR pre-activation ResNet: 3x3 conv 16, three stages (16/32/64, x4 for bottlenecks), BN-ReLU, pool, fc."""

    def __init__(self, block: Literal["basic", "bottleneck"], n: int, *, num_classes: int = 10,
                 shortcut: str = "B", stride_in_1x1: bool = True, in_chans: int = 3) -> None:
        super().__init__()
        block_cls = PreActBasicBlock if block == "basic" else PreActBottleneck
        self.block, self.num_classes = block, num_classes
        self.conv1 = conv3x3(in_chans, specs.CIFAR_WIDTHS[0])
        self.stage_modules = {"stem": "conv1"}
        in_ch = specs.CIFAR_WIDTHS[0]
        for i, width in enumerate(specs.CIFAR_WIDTHS):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block_cls(in_ch, width, stride, shortcut=shortcut, stride_in_1x1=stride_in_1x1))
                in_ch = width * block_cls.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.stage_modules[f"layer{i + 1}"] = f"layer{i + 1}"
        self.bn_final = nn.BatchNorm2d(in_ch)  # the extra BN-ReLU before pooling
        self.relu = nn.ReLU(inplace=True)
        self.num_features = in_ch
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        for stage in (self.layer1, self.layer2, self.layer3):
            x = run_stage(stage, x, self.grad_checkpointing)
        return self.relu(self.bn_final(x))


def preact_resnet(depth: int, *, num_classes: int = 10, shortcut: str = "B", **kwargs: object) -> PreActResNet:
    """Pre-activation CIFAR ResNet: basic blocks for depth 6n+2 (110), bottlenecks for 9n+2 (164, 1001)."""
    block = specs.PREACT_CIFAR_DEPTHS.get(depth)
    if block is None and depth >= 8 and (depth - 2) % 6 == 0:
        block = "basic"
    elif block is None and depth >= 11 and (depth - 2) % 9 == 0:
        block = "bottleneck"
    if block is None:
        raise specs.InvalidDepthError(
            f"pre-activation depth must be 6n+2 (basic blocks, e.g. 110) or 9n+2 (bottlenecks: 164, 1001), got {depth}"
        )
    n = specs.cifar_blocks_per_stage(depth) if block == "basic" else specs.preact_bottleneck_blocks_per_stage(depth)
    return PreActResNet(block, n, num_classes=num_classes, shortcut=shortcut, **kwargs)  # type: ignore[arg-type]
