"""``resnetlab convert``: checkpoints from elsewhere, written in the format of every trained network here
(``files.py``: safetensors, with the model's name and arguments, its classes, preprocessing and test view), so that
they load, predict, evaluate and export like the released weights. Two outside formats:

- ``torchvision``: its ImageNet ResNet checkpoints (a bare state dict). The keys are already ours; the architecture is
  ResNet-18..152 with ``stride_in_1x1=False`` (torchvision puts the bottleneck's stride on the 3x3) and option B.
  Inputs are normalised with torchvision's per-channel mean/std and tested like ImageNet (resize 256, crop 224).
- ``cifar-reference``: the best-known public CIFAR reimplementation's ``{"state_dict": ..., "best_prec1": ...}``
  files: keys ``module.``-prefixed (DataParallel), ``layer1..3.{i}.conv1/bn1/conv2/bn2``, classifier ``linear``,
  option A padding the new channels evenly on both sides (our ``option_a_pad="both"``), or option-B projections
  named ``shortcut.0/1``. It normalises with the same ImageNet mean/std, on 32x32 images.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..data.views import ViewSpec
from ..errors import ResNetLabError
from ..models import create_model, specs
from .files import read_torch_file, save_weights
from .state import load_state_dict, strip_prefixes

__all__ = ["CIFAR10_CLASSES", "Converted", "convert_cifar_reference", "convert_file", "convert_torchvision",
           "save_converted"]

SOURCES = ("torchvision", "cifar-reference")
# The per-channel statistics both outside sources normalise with (ImageNet's, on 0..1 pixels), here in 0..255 units.
IMAGENET_CHANNEL_MEAN = (0.485, 0.456, 0.406)
IMAGENET_CHANNEL_STD = (0.229, 0.224, 0.225)
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _channel_stats() -> tuple[Tensor, Tensor]:
    return (255 * torch.tensor(IMAGENET_CHANNEL_MEAN).view(3, 1, 1),
            255 * torch.tensor(IMAGENET_CHANNEL_STD).view(3, 1, 1))


@dataclass
class Converted:
    """A converted checkpoint: our model name and options, the state dict in our keys, preprocessing, metadata."""

    model_name: str
    model_kwargs: dict[str, Any]
    state_dict: dict[str, Tensor]
    mean: Tensor
    std: Tensor | None
    view: ViewSpec
    source: str
    classes: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        model = create_model(self.model_name, **self.model_kwargs)
        load_state_dict(model, self.state_dict, source=f"{self.source} checkpoint")
        return model.eval()


def _blocks_per_stage(keys: list[str], stages: int) -> tuple[int, ...]:
    counts = []
    for s in range(1, stages + 1):
        idx = {int(m.group(1)) for k in keys if (m := re.match(rf"layer{s}\.(\d+)\.", k))}
        counts.append(max(idx) + 1 if idx else 0)
    return tuple(counts)


def convert_torchvision(state_dict: Mapping[str, Tensor]) -> Converted:
    """A torchvision ImageNet ResNet state dict -> our ``resnetN`` (stride_in_1x1=False, option B), checked by
    building the model and loading the weights strictly."""
    sd = strip_prefixes(state_dict)
    if "fc.weight" not in sd or "conv1.weight" not in sd:
        raise ResNetLabError("not a torchvision ResNet state dict (no conv1.weight / fc.weight)")
    block = "bottleneck" if "layer1.0.conv3.weight" in sd else "basic"
    layers = _blocks_per_stage(list(sd), 4)
    depth = next((d for d, (b, n) in specs.IMAGENET_STAGES.items() if b == block and n == layers), None)
    if depth is None:
        raise ResNetLabError(f"a torchvision ResNet with {block} blocks {list(layers)} per stage is none of "
                             f"ResNet-{'/'.join(map(str, specs.IMAGENET_STAGES))} (Table 1)")
    kwargs = {"num_classes": int(sd["fc.weight"].shape[0]), "shortcut": "B", "stride_in_1x1": False}
    mean, std = _channel_stats()
    out = Converted(f"resnet{depth}", kwargs, dict(sd), mean, std, ViewSpec.imagenet(224), "torchvision")
    out.build()  # raises IncompatibleWeightsError (widths of a wide/ResNeXt net, ...) with the differing keys
    return out


_REF_NAMES = ((re.compile(r"(^|\.)compressible_"), r"\1"),  # one revision of the reference prefixes its layers
              (re.compile(r"^linear\."), "fc."),
              (re.compile(r"\.shortcut\."), ".downsample."))


def convert_cifar_reference(obj: Mapping[str, Any]) -> Converted:
    """The CIFAR reimplementation's checkpoint (``{"state_dict": ..., "best_prec1": ...}`` or the bare state dict)
    -> our ``resnet{6n+2}`` with ``option_a_pad="both"`` (option A) or option B where it has projections."""
    sd_in = obj.get("state_dict", obj)
    if not isinstance(sd_in, Mapping) or not all(isinstance(v, Tensor) for v in sd_in.values()):
        raise ResNetLabError("not a CIFAR reference checkpoint: expected {'state_dict': {...}} or a state dict")
    sd: dict[str, Tensor] = {}
    for key, value in strip_prefixes(sd_in).items():
        for pattern, repl in _REF_NAMES:
            key = pattern.sub(repl, key)
        sd[key] = value
    if "fc.weight" not in sd or "layer1.0.conv1.weight" not in sd:
        raise ResNetLabError("not a CIFAR reference checkpoint (no linear.weight / layer1.0.conv1.weight)")
    layers = _blocks_per_stage(list(sd), 3)
    if len(set(layers)) != 1 or _blocks_per_stage(list(sd), 4)[3]:
        raise ResNetLabError(f"a CIFAR ResNet has 3 equal stages; this checkpoint has {list(layers)} blocks")
    # Checkpoints from PyTorch < 0.4 have no BN batch counters; they do not affect outputs.
    for key in [k for k in sd if k.endswith(".running_mean")]:
        sd.setdefault(key.replace(".running_mean", ".num_batches_tracked"), torch.tensor(0))
    option = "B" if any(".downsample." in k for k in sd) else "A"
    kwargs: dict[str, Any] = {"num_classes": int(sd["fc.weight"].shape[0]), "shortcut": option}
    if option == "A":
        kwargs["option_a_pad"] = "both"
    extra = {k: (v.item() if isinstance(v, Tensor) and v.numel() == 1 else v) for k, v in obj.items()
             if k in ("best_prec1", "epoch") and isinstance(v, (int, float, Tensor))}
    mean, std = _channel_stats()
    classes = CIFAR10_CLASSES if kwargs["num_classes"] == 10 else None
    out = Converted(f"resnet{6 * layers[0] + 2}", kwargs, sd, mean, std, ViewSpec.fixed(32, 4), "cifar-reference",
                    classes, extra)
    out.build()
    return out


def save_converted(conv: Converted, path: str | Path) -> str:
    """Write ``conv`` in the weights format (``path`` and its ``.sha256``, atomically); returns the SHA-256."""
    meta = {"model": conv.model_name, "model_kwargs": conv.model_kwargs, "classes": conv.classes,
            "input_size": conv.view.crop, "view": {"crop": conv.view.crop, "resize": conv.view.resize,
                                                   "pad": conv.view.pad},
            "normalize": "channel", "source": conv.source, "extra": conv.extra}
    return save_weights(Path(path), conv.state_dict, conv.mean, conv.std, meta, half_kernels=False)


def convert_file(source: Literal["torchvision", "cifar-reference"], src: str | Path, dst: str | Path,
                 classes: list[str] | None = None) -> Converted:
    """Convert the checkpoint ``src`` of ``source`` into a resnetlab weights file ``dst`` (``.safetensors``)."""
    if source not in SOURCES:
        raise ResNetLabError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    if Path(dst).suffix != ".safetensors":
        raise ResNetLabError(f"write the converted weights to a .safetensors file (e.g. {Path(dst).with_suffix('')}"
                             ".safetensors): that is the format every resnetlab command loads")
    obj = read_torch_file(src)
    if not isinstance(obj, Mapping):
        raise ResNetLabError(f"{src} holds a {type(obj).__name__}, not a checkpoint dict")
    if source == "torchvision":
        inner = next((obj[k] for k in ("model", "state_dict") if isinstance(obj.get(k), Mapping)), obj)
        conv = convert_torchvision(inner)
    else:
        conv = convert_cifar_reference(obj)
    if classes is not None:
        if len(classes) != conv.model_kwargs["num_classes"]:
            raise ResNetLabError(f"{len(classes)} class names for a {conv.model_kwargs['num_classes']}-class model")
        conv.classes = list(classes)
    save_converted(conv, dst)
    return conv
