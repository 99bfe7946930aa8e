"""The model zoo: every network of the paper, registered once (see ``list_models``)."""

from __future__ import annotations

from . import specs
from ._registry import (
    ModelInfo,
    UnknownModelError,
    create_model,
    list_models,
    model_info,
    register_model,
    register_pattern,
)
from .layers import ZeroPadShortcut, make_shortcut
from .preact import PreActBasicBlock, PreActBottleneck, PreActResNet, preact_resnet
from .resnet import BasicBlock, Bottleneck, ResNet, cifar_plain, cifar_resnet, imagenet_plain, imagenet_resnet
from .vgg import VGG, vgg


def _register_all() -> None:
    for d in specs.CIFAR_DEPTHS:
        register_model(f"resnet{d}", cifar_resnet, family="cifar", input_size=32, depth=d)
    for d in specs.CIFAR_PLAIN_DEPTHS:
        register_model(f"plain{d}", cifar_plain, family="cifar", input_size=32, depth=d)
    for d in specs.PREACT_CIFAR_DEPTHS:
        register_model(f"preact_resnet{d}", preact_resnet, family="cifar", input_size=32, depth=d)
    for d in specs.IMAGENET_STAGES:
        register_model(f"resnet{d}", imagenet_resnet, family="imagenet", input_size=224, depth=d)
    for d in specs.IMAGENET_STAGES:
        register_model(f"plain{d}", imagenet_plain, family="imagenet", input_size=224, depth=d)
    for d in sorted(specs.VGG_CONFIGS):
        register_model(f"vgg{d}", vgg, family="imagenet", input_size=224, depth=d)
        register_model(f"vgg{d}_bn", vgg, family="imagenet", input_size=224, depth=d, batch_norm=True)
    # Any other depth by name (CIFAR-50 and -152, which resnet50/resnet152 cannot name: cifar_resnet(50)).
    # Unregistered depths by name: resnet26, plain74, preact_resnet56 ... (CIFAR; validated by the builder).
    register_pattern(r"resnet(\d+)", cifar_resnet, family="cifar", input_size=32)
    register_pattern(r"plain(\d+)", cifar_plain, family="cifar", input_size=32)
    register_pattern(r"preact_resnet(\d+)", preact_resnet, family="cifar", input_size=32)


_register_all()

__all__ = [
    "VGG",
    "BasicBlock",
    "Bottleneck",
    "ModelInfo",
    "PreActBasicBlock",
    "PreActBottleneck",
    "PreActResNet",
    "ResNet",
    "UnknownModelError",
    "ZeroPadShortcut",
    "cifar_plain",
    "cifar_resnet",
    "create_model",
    "imagenet_plain",
    "imagenet_resnet",
    "list_models",
    "make_shortcut",
    "model_info",
    "preact_resnet",
    "register_model",
    "register_pattern",
    "specs",
    "vgg",
]
