"""The paper's tables as data: architectures (depths, widths, blocks) and the numbers the paper reports.

Builders, the complexity report and the tests all read these tables, so a number is written down exactly once.
Sources: He et al. 2015, "Deep Residual Learning for Image Recognition" (arXiv 1512.03385): Table 1 (ImageNet
architectures and FLOPs), Sec. 3.3 (shortcut options A/B/C; VGG-19's FLOPs), Sec. 3.4 (ImageNet recipe), Tables 2-4
(ImageNet errors), Sec. 4.2 and Table 6 (CIFAR-10 nets and errors); He et al. 2016, "Identity Mappings in Deep
Residual Networks" (arXiv 1603.05027) for the pre-activation nets. Exact parameter counts are not the paper's (it
prints rounded ones): they are reference counts, each with its source (``REFERENCE_SOURCES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    """Numbers as the papers print them, with the papers' rounding (None where they print none)."""

    params: str | None = None  # parameter count as printed, e.g. "0.27M" (Table 6; the paper prints none for ImageNet)
    flops: str | None = None  # multiply-adds of one forward pass in units of 10^9 as printed, e.g. "3.6" (Table 1)
    top1_10crop: float | None = None  # ImageNet val error %, 10-crop (Tables 2/3)
    top5_10crop: float | None = None
    top1_best: float | None = None  # ImageNet val error %, single model, best protocol (Table 4)
    top5_best: float | None = None
    cifar10_error: float | None = None  # CIFAR-10 test error % (Table 6; Identity Mappings for pre-activation)
    cifar10_error_mean: str | None = None  # "6.61±0.16" where the paper gives mean and std


def cifar_params_option_a(depth: int) -> int:
    """Parameters of Sec. 4.2's option-A net in closed form, 97,216 n - 21,926 (10 classes).

    Counted by hand from Sec. 4.2's architecture: each of the n blocks per stage holds two 3x3 convs with BN on 16, 32
    and 64 channels (4,672 + 18,560 + 73,984 = 97,216); the constant is the first conv with its BN (464), the two
    stage-opening convs that see half the channels (-4,608 and -18,432) and the 64 -> 10 fc (650).
    """
    return 97_216 * cifar_blocks_per_stage(depth) - 21_926


PAPER: dict[str, PaperNumbers] = {
    # CIFAR-10, option A, 10 classes: Table 6 (params as printed, test error; ResNet-110: best of 5, mean ± std).
    "resnet20": PaperNumbers(params="0.27M", cifar10_error=8.75),
    "resnet32": PaperNumbers(params="0.46M", cifar10_error=7.51),
    "resnet44": PaperNumbers(params="0.66M", cifar10_error=7.17),
    "resnet56": PaperNumbers(params="0.85M", cifar10_error=6.97),
    "resnet110": PaperNumbers(params="1.7M", cifar10_error=6.43, cifar10_error_mean="6.61±0.16"),
    "resnet1202": PaperNumbers(params="19.4M", cifar10_error=7.93),
    # Identity Mappings (arXiv 1603.05027) Tables 2-3: CIFAR-10 test error of the pre-activation nets.
    "preact_resnet110": PaperNumbers(cifar10_error=6.37),
    "preact_resnet164": PaperNumbers(cifar10_error=5.46),
    "preact_resnet1001": PaperNumbers(cifar10_error=4.92),
    # ImageNet, 1000 classes. FLOPs: Table 1 (one column per depth, plain or residual; the paper's stride placement);
    # 10-crop errors: Table 2 (ResNet-18 at option A; plain-18/34) and Table 3 (option B; plain-34, VGG-16);
    # best single-model errors: Table 4.
    "resnet18": PaperNumbers(flops="1.8", top1_10crop=27.88),
    "resnet34": PaperNumbers(flops="3.6", top1_10crop=24.52, top5_10crop=7.46, top1_best=21.84, top5_best=5.71),
    "resnet50": PaperNumbers(flops="3.8", top1_10crop=22.85, top5_10crop=6.71, top1_best=20.74, top5_best=5.25),
    "resnet101": PaperNumbers(flops="7.6", top1_10crop=21.75, top5_10crop=6.05, top1_best=19.87, top5_best=4.60),
    "resnet152": PaperNumbers(flops="11.3", top1_10crop=21.43, top5_10crop=5.71, top1_best=19.38, top5_best=4.49),
    "plain18": PaperNumbers(flops="1.8", top1_10crop=27.94),
    "plain34": PaperNumbers(flops="3.6", top1_10crop=28.54, top5_10crop=10.02),  # 3.6: also Sec. 3.3
    "vgg16": PaperNumbers(top1_10crop=28.07, top5_10crop=9.33),
    "vgg19": PaperNumbers(flops="19.6"),  # Sec. 3.3 and Fig. 3: "VGG-19 (19.6 billion FLOPs)"
}

# The other shortcut options of ResNet-34 in the paper (Table 3, 10-crop; Table 4, best single model).
PAPER_VARIANTS: dict[tuple[str, str], PaperNumbers] = {
    ("resnet34", "A"): PaperNumbers(top1_10crop=25.03, top5_10crop=7.76),  # also Table 2's ResNet-34
    ("resnet34", "C"): PaperNumbers(top1_10crop=24.19, top5_10crop=7.40, top1_best=21.53, top5_best=5.60),
}


def paper_numbers(model: str, shortcut: str | None = None) -> PaperNumbers | None:
    """The paper's numbers for ``model`` with ``shortcut`` (None: the registry's default option)."""
    if shortcut is not None and (model, shortcut) in PAPER_VARIANTS:
        return PAPER_VARIANTS[(model, shortcut)]
    return PAPER.get(model)


# --- Exact parameter counts from outside the paper ------------------------------------------------------------------
# The paper prints no exact count (Table 6 rounds to 0.01M / 0.1M; ImageNet has none), so the exact counts the models
# must have come from reference implementations of the same architectures, or from one of those by adding or
# removing shortcut projections by hand. Where each comes from, as ``resnetlab models`` names it:
REFERENCE_SOURCES: dict[str, str] = {
    "torchvision": "torchvision's ImageNet ResNets (option B; its stride placement moves no parameter)",
    "CIFAR reference": "the ResNets of akamaster/pytorch_resnet_cifar10, the best-known CIFAR reimplementation "
                       "(option A; `resnetlab convert --from cifar-reference` reads its weights)",
    "torchvision - proj.": "torchvision's count less its 3 projection shortcuts (173,824 parameters): option A adds "
                           "none, so option-A ResNet-18/34 and plain-18/34 have this count (Sec. 3.3, Sec. 4.1)",
    "CIFAR reference (= ResNet)": "the CIFAR reference's ResNet of the same depth: option A adds no parameters, so "
                                  "plain-N has exactly ResNet-N's count (Sec. 4.2)",
    "CIFAR reference + proj.": "the CIFAR reference's count plus 2 projection shortcuts with BN (2,752 parameters)",
}


@dataclass(frozen=True)
class ReferenceCount:
    params: int  # exact, at the registry's default options (classes: 10 for CIFAR, 1000 for ImageNet)
    source: str  # a key of REFERENCE_SOURCES


REFERENCE_PARAMS: dict[str, ReferenceCount] = {
    "resnet20": ReferenceCount(269_722, "CIFAR reference"),
    "resnet32": ReferenceCount(464_154, "CIFAR reference"),
    "resnet44": ReferenceCount(658_586, "CIFAR reference"),
    "resnet56": ReferenceCount(853_018, "CIFAR reference"),
    "resnet110": ReferenceCount(1_727_962, "CIFAR reference"),
    "resnet1202": ReferenceCount(19_421_274, "CIFAR reference"),
    "plain20": ReferenceCount(269_722, "CIFAR reference (= ResNet)"),
    "plain32": ReferenceCount(464_154, "CIFAR reference (= ResNet)"),
    "plain44": ReferenceCount(658_586, "CIFAR reference (= ResNet)"),
    "plain56": ReferenceCount(853_018, "CIFAR reference (= ResNet)"),
    "plain110": ReferenceCount(1_727_962, "CIFAR reference (= ResNet)"),
    "resnet18": ReferenceCount(11_689_512, "torchvision"),
    "resnet34": ReferenceCount(21_797_672, "torchvision"),
    "resnet50": ReferenceCount(25_557_032, "torchvision"),
    "resnet101": ReferenceCount(44_549_160, "torchvision"),
    "resnet152": ReferenceCount(60_192_808, "torchvision"),
    "plain18": ReferenceCount(11_515_688, "torchvision - proj."),
    "plain34": ReferenceCount(21_623_848, "torchvision - proj."),
}
# The same for a shortcut option other than the registry's default.
REFERENCE_VARIANT_PARAMS: dict[tuple[str, str], ReferenceCount] = {
    ("resnet18", "A"): ReferenceCount(11_515_688, "torchvision - proj."),
    ("resnet34", "A"): ReferenceCount(21_623_848, "torchvision - proj."),
    ("resnet56", "B"): ReferenceCount(855_770, "CIFAR reference + proj."),
}

# Table 6's other methods (CIFAR-10 test error %), for the reproduction tables.
TABLE6_OTHERS = {"Maxout": 9.38, "NIN": 8.81, "DSN": 8.22, "FitNet-19": 8.39, "Highway-19": 7.54, "Highway-32": 8.80}

# Public reproductions of Table 6 on the official CIFAR-10 files (test error %, ResNet-20/32/44/56/110), with how they
# were trained; the reproduction tables print them beside the paper's column.
PUBLIC_REPRODUCTIONS: dict[str, dict[str, Any]] = {
    "akamaster/pytorch_resnet_cifar10": {
        "how": "50k images, about 78k iterations, best epoch picked on the test set",
        "errors": {"resnet20": 8.27, "resnet32": 7.37, "resnet44": 6.90, "resnet56": 6.61, "resnet110": 6.32}},
    "gcr/torch-residual-networks": {
        "how": "a Torch (Lua) reimplementation",
        "errors": {"resnet20": 8.29, "resnet32": 7.63, "resnet44": 7.14, "resnet56": 6.94, "resnet110": 6.73}},
}
