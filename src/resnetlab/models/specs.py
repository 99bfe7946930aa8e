"""The paper's tables as data: architectures (depths, widths, blocks) and the numbers the paper reports.

Builders, the complexity report and the tests all read these tables, so a number is written down exactly once.
Sources: He et al. 2015 (arXiv 1512.03385) Table 1, Sec. 4.2, Tables 2-4 and 6; He et al. 2016 (arXiv 1603.05027).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ResNetLabError


class InvalidDepthError(ResNetLabError, ValueError):
    """A depth the architecture family cannot have."""

# --- ImageNet (Table 1) -------------------------------------------------------------------------------------------
IMAGENET_WIDTHS = (64, 128, 256, 512)  # conv2_x..conv5_x; bottleneck outputs are 4x these
BOTTLENECK_EXPANSION = 4
# depth -> (block type, blocks per stage conv2_x..conv5_x)
IMAGENET_STAGES: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
# VGG (Simonyan & Zisserman), the paper's reference baseline: conv widths per stage, "M" = 2x2 max-pool.
VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}

# --- CIFAR-10 (Sec. 4.2) ------------------------------------------------------------------------------------------
CIFAR_WIDTHS = (16, 32, 64)  # 3 stages on 32x32, 16x16, 8x8 maps
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)  # the depths of Table 6 (n = 3, 5, 7, 9, 18, 200)
CIFAR_PLAIN_DEPTHS = (20, 32, 44, 56, 110)  # Fig. 6 left
PREACT_CIFAR_DEPTHS = {110: "basic", 164: "bottleneck", 1001: "bottleneck"}  # Identity Mappings, Table 2/3


def cifar_blocks_per_stage(depth: int) -> int:
    """n of the paper's 6n+2 (basic blocks: 2 layers each, 3 stages, plus first conv and fc)."""
    if depth < 8 or (depth - 2) % 6:
        raise InvalidDepthError(
            f"CIFAR depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, 1202, ...), got {depth}"
        )
    return (depth - 2) // 6


def preact_bottleneck_blocks_per_stage(depth: int) -> int:
    """n of the Identity Mappings paper's bottleneck nets: 3 layers per block, depth = 9n+2 (164: 18, 1001: 111)."""
    if depth < 11 or (depth - 2) % 9:
        raise InvalidDepthError(f"pre-activation bottleneck depth must be 9n+2 (164, 1001, ...), got {depth}")
    return (depth - 2) // 9


def imagenet_stages(depth: int) -> tuple[str, tuple[int, int, int, int]]:
    if depth not in IMAGENET_STAGES:
        raise InvalidDepthError(
            f"unknown ImageNet ResNet depth {depth}; the paper's depths are {sorted(IMAGENET_STAGES)}"
        )
    return IMAGENET_STAGES[depth]


# --- What the paper reports -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PaperNumbers:
    """Numbers the papers give for one model (None where they give none)."""

    params: int | None = None  # exact count at the registry's default options
    macs: float | None = None  # multiply-adds of one forward pass at the input size (Table 1 "FLOPs")
    top1_10crop: float | None = None  # ImageNet val error %, 10-crop (Tables 2/3)
    top5_10crop: float | None = None
    top1_best: float | None = None  # ImageNet val error %, single model, best protocol (Table 4)
    top5_best: float | None = None
    cifar10_error: float | None = None  # CIFAR-10 test error % (Table 6; Identity Mappings for pre-activation)
    cifar10_error_mean: str | None = None  # "6.61±0.16" where the paper gives mean and std


def cifar_params_option_a(depth: int) -> int:
    """Sec. 4.2 option-A count in closed form, 97,216 n - 21,926 (10 classes), as given in FACTS.md."""
    return 97_216 * cifar_blocks_per_stage(depth) - 21_926


PAPER: dict[str, PaperNumbers] = {
    # CIFAR-10, option A, 10 classes (Table 6). Plain-N has exactly ResNet-N's parameters (option A adds none).
    "resnet20": PaperNumbers(params=269_722, cifar10_error=8.75),
    "resnet32": PaperNumbers(params=464_154, cifar10_error=7.51),
    "resnet44": PaperNumbers(params=658_586, cifar10_error=7.17),
    "resnet56": PaperNumbers(params=853_018, cifar10_error=6.97),
    "resnet110": PaperNumbers(params=1_727_962, cifar10_error=6.43, cifar10_error_mean="6.61±0.16"),
    "resnet1202": PaperNumbers(params=19_421_274, cifar10_error=7.93),
    "plain20": PaperNumbers(params=269_722),
    "plain32": PaperNumbers(params=464_154),
    "plain44": PaperNumbers(params=658_586),
    "plain56": PaperNumbers(params=853_018),
    "plain110": PaperNumbers(params=1_727_962),
    "preact_resnet110": PaperNumbers(cifar10_error=6.37),
    "preact_resnet164": PaperNumbers(cifar10_error=5.46),
    "preact_resnet1001": PaperNumbers(cifar10_error=4.92),
    # ImageNet, option B for ResNets, 1000 classes (Tables 1-4). MACs: Table 1 at stride_in_1x1=True.
    "resnet18": PaperNumbers(params=11_689_512, macs=1.8e9, top1_10crop=27.88),
    "resnet34": PaperNumbers(params=21_797_672, macs=3.6e9, top1_10crop=24.52, top5_10crop=7.46,
                             top1_best=21.84, top5_best=5.71),
    "resnet50": PaperNumbers(params=25_557_032, macs=3.8e9, top1_10crop=22.85, top5_10crop=6.71,
                             top1_best=20.74, top5_best=5.25),
    "resnet101": PaperNumbers(params=44_549_160, macs=7.6e9, top1_10crop=21.75, top5_10crop=6.05,
                              top1_best=19.87, top5_best=4.60),
    "resnet152": PaperNumbers(params=60_192_808, macs=11.3e9, top1_10crop=21.43, top5_10crop=5.71,
                              top1_best=19.38, top5_best=4.49),
    "plain18": PaperNumbers(params=11_515_688, macs=1.8e9, top1_10crop=27.94),
    "plain34": PaperNumbers(params=21_623_848, macs=3.6e9, top1_10crop=28.54, top5_10crop=10.02),
    "vgg16": PaperNumbers(top1_10crop=28.07, top5_10crop=9.33),
    "vgg19": PaperNumbers(macs=19.6e9),
}

# Option A/C variants quoted by the paper (Table 3, ResNet-34) and the option-B CIFAR count (FACTS.md).
PAPER_VARIANTS: dict[tuple[str, str], PaperNumbers] = {
    ("resnet34", "A"): PaperNumbers(params=21_623_848, top1_10crop=25.03, top5_10crop=7.76),
    ("resnet34", "C"): PaperNumbers(top1_10crop=24.19, top5_10crop=7.40, top1_best=21.53, top5_best=5.60),
    ("resnet18", "A"): PaperNumbers(params=11_515_688),
    ("resnet56", "B"): PaperNumbers(params=855_770),
}
# Recounted multiply-adds (FACTS.md): the paper rounds to one decimal.
RECOUNTED_MACS = {("resnet50", True): 3.858e9, ("resnet101", True): 7.570e9, ("resnet152", True): 11.282e9,
                  ("resnet50", False): 4.089e9}

# Table 6's other methods (CIFAR-10 test error %), for the reproduction tables.
TABLE6_OTHERS = {"Maxout": 9.38, "NIN": 8.81, "DSN": 8.22, "FitNet-19": 8.39, "Highway-19": 7.54, "Highway-32": 8.80}
