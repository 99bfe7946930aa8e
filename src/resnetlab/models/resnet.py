"""Residual and plain networks of the paper: CIFAR 6n+2 nets (Sec. 4.2) and ImageNet 18-152 (Table 1).

State-dict keys follow torchvision (``conv1 bn1 layer1..layerN.{i}.conv1/bn1/... .downsample.0/.1 fc``), so its
ResNet checkpoints load into ``stride_in_1x1=False, shortcut="B"`` with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from . import specs
from .layers import ClassifierMixin, conv1x1, conv3x3, init_weights, make_shortcut, run_stage


class BasicBlock(nn.Module):
    """Two 3x3 convs (Fig. 2 left, Fig. 5 left); ``residual=False`` drops the shortcut (the plain nets)."""

    expansion = 1
    response_bns = ("bn1", "bn2")  # BNs that follow a 3x3 conv (Fig. 7's layer responses)
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))  # foldable for inference (inference.fold_batchnorm)

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int = 1,
        *,
        residual: bool = True,
        shortcut: str = "B",
        option_a_pad: Literal["end", "both"] = "end",
        stride_in_1x1: bool = True,  # unused: basic blocks have no 1x1 (kept so both block types share a signature)
    ) -> None:
        super().__init__()
        # The paper subsamples with the first 3x3 conv of a stage (Table 1 "conv3_1 ... stride 2").
        self.conv1 = conv3x3(in_ch, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual
        self.downsample = make_shortcut(shortcut, in_ch, width, stride, pad=option_a_pad) if residual else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            # Not in place: the BN output stays intact for hooks that read the layer responses (Fig. 7).
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)  # ReLU after the addition (Sec. 3.2)


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 -> 1x1 (expand x4) (Fig. 5 right).

    ``stride_in_1x1=True`` puts a downsampling block's stride on the first 1x1, as the paper (Sec. 3.3, "performed
    by a stride of 2") and its released models do; False puts it on the 3x3, torchvision's "v1.5" (more FLOPs).
    """

    expansion = specs.BOTTLENECK_EXPANSION
    response_bns = ("bn2",)  # the only 3x3 conv of the block
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int = 1,
        *,
        residual: bool = True,
        shortcut: str = "B",
        option_a_pad: Literal["end", "both"] = "end",
        stride_in_1x1: bool = True,
    ) -> None:
        super().__init__()
        out_ch = width * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_ch, width, s1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, s3)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual
        self.downsample = make_shortcut(shortcut, in_ch, out_ch, stride, pad=option_a_pad) if residual else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(ClassifierMixin, nn.Module):
    """A residual (or, with ``residual=False``, plain) network.

    Args:
        block: "basic" or "bottleneck".
        layers: blocks per stage; widths: the stage widths (bottleneck outputs are 4x).
        stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool, Table 1) or "cifar" (one 3x3 conv, Sec. 4.2).
        shortcut: option "A" (zero-padding), "B" (projection where dimensions change) or "C" (all projections).
        stride_in_1x1: bottleneck stride placement (True: the paper, False: torchvision's v1.5).
        zero_init_residual: start each block's last BN at gamma=0 (Goyal et al.; not in the paper).
    """

    conv_bn_pairs = (("conv1", "bn1"),)  # the stem

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        widths: Sequence[int],
        *,
        stem: Literal["imagenet", "cifar"],
        num_classes: int,
        residual: bool = True,
        shortcut: str = "B",
        stride_in_1x1: bool = True,
        zero_init_residual: bool = False,
        option_a_pad: Literal["end", "both"] = "end",
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        if zero_init_residual and not residual:
            raise ValueError("zero_init_residual needs shortcuts: a plain net with a zero BN would output constants")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        block_cls = BLOCKS[block]
        self.block, self.residual, self.shortcut, self.num_classes = block, residual, shortcut, num_classes
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, widths[0], 7, stride=2, padding=3, bias=False)
        elif stem == "cifar":
            self.conv1 = conv3x3(in_chans, widths[0])
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        self.stage_modules = {"stem": "maxpool" if stem == "imagenet" else "relu"}
        self.response_bns = ("bn1",) if stem == "cifar" else ()  # the ImageNet stem conv is 7x7, not 3x3

        in_ch = widths[0]
        for i, (n, width) in enumerate(zip(layers, widths, strict=True)):
            stride = 1 if i == 0 else 2  # first stage keeps the stem's resolution; the others halve it
            blocks = []
            for j in range(n):
                blocks.append(block_cls(in_ch, width, stride if j == 0 else 1, residual=residual,
                                        shortcut=shortcut, option_a_pad=option_a_pad, stride_in_1x1=stride_in_1x1))
                in_ch = width * block_cls.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.stage_modules[f"layer{i + 1}"] = f"layer{i + 1}"
        self.num_stages = len(layers)
        self.num_features = in_ch
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)

        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_((m.bn2 if isinstance(m, BasicBlock) else m.bn3).weight)

    def forward_features(self, x: Tensor) -> Tensor:
        """[B, 3, H, W] -> last stage's map [B, num_features, H/32, W/32] (ImageNet) or [B, 64, H/4, W/4] (CIFAR)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = run_stage(getattr(self, f"layer{i + 1}"), x, self.grad_checkpointing)
        return x


# --- builders ---------------------------------------------------------------------------------------------------------
def cifar_resnet(depth: int, *, num_classes: int = 10, shortcut: str = "A", residual: bool = True,
                 **kwargs: object) -> ResNet:
    """CIFAR net of depth 6n+2 (Sec. 4.2): 3x3 conv 16, 3 stages of n basic blocks (16/32/64), avg-pool, fc.

    Option A by default: the paper uses it for every CIFAR net, so ResNet-N and plain-N have the same parameters.
    """
    n = specs.cifar_blocks_per_stage(depth)
    return ResNet("basic", (n, n, n), specs.CIFAR_WIDTHS, stem="cifar", num_classes=num_classes,
                  shortcut=shortcut, residual=residual, **kwargs)  # type: ignore[arg-type]


def cifar_plain(depth: int, **kwargs: object) -> ResNet:
    """The plain CIFAR net: ``cifar_resnet`` with every shortcut removed (Sec. 4.2, Fig. 6 left)."""
    return cifar_resnet(depth, residual=False, **kwargs)  # type: ignore[arg-type]


def imagenet_resnet(depth: int, *, num_classes: int = 1000, shortcut: str = "B", residual: bool = True,
                    stride_in_1x1: bool = True, **kwargs: object) -> ResNet:
    """ImageNet ResNet-18/34/50/101/152 (Table 1); option B by default (Sec. 3.3, Tables 3-4)."""
    block, layers = specs.imagenet_stages(depth)
    return ResNet(block, layers, specs.IMAGENET_WIDTHS, stem="imagenet", num_classes=num_classes,
                  shortcut=shortcut, residual=residual, stride_in_1x1=stride_in_1x1, **kwargs)  # type: ignore[arg-type]


def imagenet_plain(depth: int, **kwargs: object) -> ResNet:
    """Plain ImageNet net: the same stack without shortcuts (Sec. 4.1, Table 2, Fig. 4)."""
    return imagenet_resnet(depth, residual=False, **kwargs)  # type: ignore[arg-type]
