"""Model files from elsewhere and from training, behind one loader (``resnetlab convert / predict / export / eval``).

Two outside formats convert to a *resnetlab weights file* (``{"format": "resnetlab.weights", "model": state dict,
"model_name", "model_kwargs", "classes", "mean", "std", "view", "source"}``), which records everything needed to
rebuild, preprocess and name the outputs:

- ``torchvision``: its ImageNet ResNet checkpoints (a bare state dict). The keys are already ours; the architecture is
  ResNet-18..152 with ``stride_in_1x1=False`` (torchvision puts the bottleneck's stride on the 3x3) and option B.
  Inputs are normalised with torchvision's per-channel mean/std and tested like ImageNet (resize 256, crop 224).
- ``cifar-reference``: the best-known public CIFAR reimplementation's ``{"state_dict": ..., "best_prec1": ...}``
  files: keys ``module.``-prefixed (DataParallel), ``layer1..3.{i}.conv1/bn1/conv2/bn2``, classifier ``linear``,
  option A padding the new channels evenly on both sides (our ``option_a_pad="both"``), or option-B projections
  named ``shortcut.0/1``. It normalises with the same ImageNet mean/std, on 32x32 images.

:func:`load_model_file` reads those weights files and resnetlab training checkpoints alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .data.views import ViewSpec
from .errors import ResNetLabError
from .io import atomic_write
from .models import create_model, list_weights, specs, weights_entry
from .models.weights import load_state_dict, strip_prefixes
from .runfiles import WEIGHTS_NAME, list_checkpoints

__all__ = [
    "CIFAR10_CLASSES",
    "LoadedModel",
    "convert_cifar_reference",
    "convert_file",
    "convert_torchvision",
    "load_model_file",
    "model_file_kind",
    "save_weights_file",
]

WEIGHTS_FORMAT = "resnetlab.weights"
WEIGHTS_VERSION = 1
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


def save_weights_file(conv: Converted, path: str | Path) -> Path:
    """Write ``conv`` as a resnetlab weights file (atomically; loadable with ``weights_only=True``)."""
    path = Path(path)
    payload = {
        "format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "model": conv.state_dict, "model_name": conv.model_name,
        "model_kwargs": conv.model_kwargs, "classes": conv.classes, "mean": conv.mean, "std": conv.std,
        "view": conv.view.to_dict(), "source": conv.source, "extra": conv.extra,
    }
    atomic_write(path, lambda f: torch.save(payload, f))
    return path


def _read(path: Path) -> Any:
    if not path.is_file():
        if "/" not in str(path) and path.suffix not in (".pt", ".pth", ".safetensors", ".ckpt"):
            try:  # perhaps a mistyped weights name: say the close matches
                weights_entry(str(path))
            except ResNetLabError as exc:
                raise ResNetLabError(f"{path} is neither a file nor released weights: {exc}") from None
        raise ResNetLabError(f"{path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, or a pickle that would run code
        first = (str(exc).splitlines() or [""])[0][:200]  # an empty file raises with an empty message
        raise ResNetLabError(f"cannot read {path}: {type(exc).__name__}: {first} (corrupt, "
                             "truncated, or not a weights-only PyTorch file; files that would run code are refused)"
                             ) from None


def convert_file(source: Literal["torchvision", "cifar-reference"], src: str | Path, dst: str | Path,
                 classes: list[str] | None = None) -> Converted:
    """Convert the checkpoint ``src`` of ``source`` into a resnetlab weights file ``dst``."""
    if source not in SOURCES:
        raise ResNetLabError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    obj = _read(Path(src))
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
    save_weights_file(conv, dst)
    return conv


# --- one loader for every model file ------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A model ready for inference (eval mode, CPU) with what its inputs and outputs need."""

    model: nn.Module
    name: str
    model_kwargs: dict[str, Any]
    classes: list[str] | None  # None: outputs are named by index
    mean: Tensor  # 0..255 units: [3, c, c] per-pixel or [3, 1, 1] per-channel
    std: Tensor | None
    view: ViewSpec  # how test views are formed (crop size, resize, 10-crop padding)
    kind: str  # "checkpoint" (resnetlab training) or "weights" (converted)
    state: dict[str, Any]  # the whole file
    config: Any = None  # the TrainConfig of a training checkpoint

    @property
    def iteration(self) -> int | None:
        return int(self.state["iteration"]) if "iteration" in self.state else None

    @property
    def num_classes(self) -> int:
        return int(self.model.get_classifier().out_features)  # type: ignore[operator, union-attr]


def resolve_source(spec: str | Path) -> str | Path:
    """What a user's ``--weights``/``--checkpoint`` names, as a file or a released weights name.

    A run folder stands for its final ``model.safetensors`` (or, unfinished, its newest checkpoint); a model name
    (``resnet56``) or ``MODEL.DEFAULT`` for the model's default weights (what ``pretrained=True`` loads). Anything
    else is returned as given."""
    from .models import list_models

    text = str(spec)
    path = Path(text)
    if path.is_dir():
        if (path / WEIGHTS_NAME).is_file():
            return path / WEIGHTS_NAME
        found = list_checkpoints(path)
        if not found:
            raise ResNetLabError(f"{path} is a folder without a finished run's model.safetensors or a checkpoint: "
                                 "pass a run folder, a weights file or a released weights name")
        return found[-1][1]
    if path.exists():
        return spec
    if text == "DEFAULT":
        raise ResNetLabError("DEFAULT needs a model: pass the model's name (e.g. --weights resnet56) for its default "
                             "weights, or MODEL.DEFAULT")
    model = text.removesuffix(".DEFAULT")
    if model in list_models():
        return weights_entry("DEFAULT", model).name
    return spec


def _released_source(spec: str | Path) -> bool:
    """A released weights name (``resnet56.cifar10jpeg_medium``) or a resnetlab ``.safetensors`` file."""
    text = str(spec)
    return text.endswith(".safetensors") or (not Path(text).exists() and text in list_weights())


def model_file_kind(path: str | Path) -> str | None:
    """"checkpoint" (resnetlab training), "weights" (``resnetlab convert``), "released" (a weights name or a
    ``.safetensors`` file), or None (a bare state dict, ...)."""
    path = resolve_source(path)
    if _released_source(path):
        return "released"
    obj = _read(Path(path))
    fmt = obj.get("format") if isinstance(obj, dict) else None
    return {"resnetlab.checkpoint": "checkpoint", WEIGHTS_FORMAT: "weights"}.get(fmt)  # type: ignore[arg-type]


def load_model_file(path: str | Path) -> LoadedModel:
    """A resnetlab training checkpoint (``checkpoint-NNNNNNN.pt``; its checksum verified when present) or a weights
    file written by ``resnetlab convert``; anything else is refused with a hint. A run folder, a model name and
    ``MODEL.DEFAULT`` are resolved first (:func:`resolve_source`)."""
    path = resolve_source(path)
    if _released_source(path):
        return _load_released(str(path))
    path = Path(path)
    obj = _read(path)
    fmt = obj.get("format") if isinstance(obj, dict) else None
    if fmt == "resnetlab.checkpoint":
        from .train.trained import load_trained

        model, cfg, state = load_trained(path)
        view = (ViewSpec.imagenet(int(state["input_size"])) if cfg.loader == "stream"
                else ViewSpec.fixed(int(state["input_size"]), cfg.pad))
        return LoadedModel(model, cfg.model, {**cfg.model_kwargs, "num_classes": len(state["classes"])},
                           list(state["classes"]), state["mean"], state["std"], view, "checkpoint", state, cfg)
    if fmt == WEIGHTS_FORMAT:
        v = obj["view"]
        view = ViewSpec(int(v["crop"]), int(v["resize"]), int(v["pad"]))
        model = create_model(obj["model_name"], **obj["model_kwargs"])
        load_state_dict(model, obj["model"], source=str(path))
        classes = list(obj["classes"]) if obj.get("classes") else None
        return LoadedModel(model.eval(), obj["model_name"], dict(obj["model_kwargs"]), classes, obj["mean"],
                           obj["std"], view, "weights", obj)
    raise ResNetLabError(f"{path} is neither a resnetlab training checkpoint nor a resnetlab weights file; convert "
                         "outside checkpoints first: resnetlab convert --from torchvision|cifar-reference IN OUT")


def _load_released(spec: str) -> LoadedModel:
    """Released weights by name, or any resnetlab ``.safetensors`` file (a run's ``model.safetensors``)."""
    from .pretrained import load_pretrained

    model, wf = load_pretrained(spec)
    meta = wf.meta
    size = int(meta["input_size"])
    view = ViewSpec.imagenet(size) if meta.get("loader") == "stream" else ViewSpec.fixed(size, int(meta.get("pad", 4)))
    return LoadedModel(model, meta["model"], dict(meta.get("model_kwargs", {})), list(meta["classes"]), wf.mean,
                       wf.std, view, "released", {"meta": meta, "sha256": wf.sha256,
                                                  "iteration": meta.get("iterations")})
