"""Every way of naming trained weights, resolved in one place (:func:`resolve`), and one function that loads them
(:func:`load`).

A user's string (``--weights``, ``--checkpoint``, ``--init``, ``create_model(weights=...)``) names one of:

- released weights: a full name (``resnet56.cifar10jpeg_medium``); a model's name or ``MODEL.DEFAULT`` for its
  default (what ``pretrained=True`` loads); with ``model=`` given, a tag alone or ``"DEFAULT"``;
- a run folder: its final ``model.safetensors``, or, unfinished, its newest checkpoint;
- a file: weights in the format of ``files.py``, a training checkpoint, an older ``resnetlab.weights`` file, or a
  bare state dict (weights only: the model must then be named).
"""

from __future__ import annotations

import difflib
import inspect
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..data.views import ViewSpec
from ..errors import ResNetLabError
from ..io import checksum_path
from ..models import create_model as _build
from ..models import list_models, model_info
from ..runfiles import WEIGHTS_NAME, list_checkpoints
from . import hub
from .files import (
    CHECKPOINT_FORMAT,
    LEGACY_FORMAT,
    WeightsFile,
    checkpoint_meta,
    checkpoint_state,
    legacy_weights,
    load_weights,
    read_torch_bytes,
    state_dict_of,
    view_of,
)
from .preprocess import ImagePreprocess, Preprocessing
from .registry import WeightsEntry, list_weights, weights_entry
from .state import load_state_dict

__all__ = ["LoadedModel", "Source", "TrainedWeights", "Weights", "create_model", "get_weights", "load", "read",
           "resolve"]

_FILE_SUFFIXES = (".pt", ".pth", ".th", ".tar", ".ckpt", ".safetensors")


@dataclass(frozen=True)
class Weights:
    """A released weights file, torchvision's ``Weights`` in spirit: ``meta`` is its card, ``transforms()`` its
    preprocessing."""

    entry: WeightsEntry

    name = property(lambda self: self.entry.name)
    model = property(lambda self: self.entry.model)
    meta = property(lambda self: self.entry.meta)
    sha256 = property(lambda self: self.entry.sha256)

    def __repr__(self) -> str:
        return f"Weights({self.name!r}, test_error={self.meta.get('test_error')})"

    def path(self, base_url: str | None = None, progress: bool = True) -> Path:
        """A local copy of the file (the clone's, the cache's, or downloaded now); not yet checked."""
        return hub.weights_path(self.entry, base_url, progress=progress)

    def load(self, base_url: str | None = None, progress: bool = True) -> WeightsFile:
        """The verified file: state dict, preprocessing statistics and metadata."""
        return hub.load_entry(self.entry, base_url, progress)

    def transforms(self, base_url: str | None = None) -> ImagePreprocess:
        """The preprocessing these weights were trained with (the training images' per-pixel mean travels in the
        file): uint8 images, or floats in [0, 1], in; the model's input out."""
        wf = self.load(base_url, progress=False)
        return ImagePreprocess.for_view(wf.mean, wf.std, view_of(wf.meta))

    @property
    def classes(self) -> list[str]:
        """The class names, in the order of the model's outputs."""
        return list(self.meta["dataset"]["classes"])


def get_weights(name: str, model: str | None = None) -> Weights:
    """The released weights ``name`` (``resnet56.cifar10jpeg_medium``; with ``model``, also the tag alone or
    ``"DEFAULT"``)."""
    return Weights(weights_entry(name, model))


# --- resolving a user's string ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """What a user's string names: released weights (``entry``) or a file (``path``)."""

    text: str  # as the user wrote it
    entry: WeightsEntry | None = None
    path: Path | None = None

    def __str__(self) -> str:
        return self.entry.name if self.entry is not None else str(self.path)


def resolve(spec: str | os.PathLike[str] | Weights, model: str | None = None) -> Source:
    """The released weights or the file that ``spec`` names (see the module's docstring); an unknown name is one
    error that lists the close matches."""
    if isinstance(spec, Weights):
        return Source(spec.name, entry=spec.entry)
    text = os.fspath(spec)
    path = Path(text)
    if path.is_dir():  # a run folder
        if (path / WEIGHTS_NAME).is_file():
            return Source(text, path=path / WEIGHTS_NAME)
        found = list_checkpoints(path)
        if not found:
            raise ResNetLabError(f"{path} is a folder without a finished run's {WEIGHTS_NAME} or a checkpoint: pass "
                                 "a run folder, a weights file or a released weights name")
        return Source(text, path=found[-1][1])
    if path.is_file():
        return Source(text, path=path)
    if text == "DEFAULT" and model is None:
        raise ResNetLabError("DEFAULT needs a model: pass the model's name (e.g. --weights resnet56) for its default "
                             "weights, or MODEL.DEFAULT")
    if model is not None and "." not in text:  # a tag of the model's weights, or "DEFAULT"
        return Source(text, entry=weights_entry(text, model))
    if text.removesuffix(".DEFAULT") in list_models():  # a model's default weights
        return Source(text, entry=weights_entry("DEFAULT", text.removesuffix(".DEFAULT")))
    if text in list_weights():
        return Source(text, entry=weights_entry(text, model))
    if os.sep in text or "/" in text or path.suffix in _FILE_SUFFIXES:
        raise ResNetLabError(f"{path} does not exist")
    close = difflib.get_close_matches(text, list_models(), n=3, cutoff=0.75)
    if close:  # a mistyped model name, for its default weights
        raise ResNetLabError(f"{text} is neither a file nor released weights; did you mean {' or '.join(close)} (the "
                             "model's default weights)? (`resnetlab weights` lists them)")
    try:  # a mistyped weights name: say the close matches
        weights_entry(text, model)
    except ResNetLabError as exc:
        raise ResNetLabError(f"{text} is neither a file nor released weights: {exc}") from None
    raise AssertionError("unreachable: weights_entry found a name list_weights does not list")


# --- reading what a source holds --------------------------------------------------------------------------------------
@dataclass
class TrainedWeights:
    """What a source holds, read and verified, before a model is built: the state dict and, where the file records
    them, the model it belongs to, its classes, preprocessing and test view."""

    source: str  # the released name or the file
    kind: str  # "released", "weights" (a .safetensors file), "checkpoint", "legacy" (resnetlab.weights), "state_dict"
    state_dict: dict[str, Tensor]
    meta: dict[str, Any]  # the file's metadata (model, model_kwargs, classes, input_size, data, iterations, ...)
    mean: Tensor | None = None  # 0..255 units: [3, c, c] per-pixel or [3, 1, 1] per-channel
    std: Tensor | None = None
    sha256: str | None = None  # of the file, where it is checked
    run_config: dict[str, Any] | None = None  # a training checkpoint's config (flat, as saved)

    @property
    def name(self) -> str | None:
        return self.meta.get("model")

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return dict(self.meta.get("model_kwargs") or {})

    @property
    def classes(self) -> list[str] | None:  # None: outputs are named by index
        return list(self.meta["classes"]) if self.meta.get("classes") else None

    @property
    def view(self) -> ViewSpec:
        """How test views are formed (crop size, resize, 10-crop padding)."""
        return view_of(self.meta)

    @property
    def iteration(self) -> int | None:
        it = self.meta.get("iterations")
        return None if it is None else int(it)

    def build(self) -> nn.Module:
        """The model, built from the file's record and loaded (eval mode, CPU), carrying its preprocessing
        (``model.preprocess``) and class names (``model.classes``) where the file has them."""
        if self.name is None:
            raise ResNetLabError(f"{self.source} holds only a state dict, which does not say what model it belongs "
                                 "to: convert it first (resnetlab convert --from torchvision|cifar-reference IN "
                                 "OUT.safetensors), or load it into a model you build (load_state_dict)")
        net = _build(self.name, **self.model_kwargs)
        load_state_dict(net, self.state_dict, source=self.source)
        if self.mean is not None and ("view" in self.meta or "input_size" in self.meta):
            net.preprocess = Preprocessing(ImagePreprocess.for_view(self.mean, self.std, self.view))
        if self.classes is not None:
            net.classes = self.classes
        return net.eval()


def read(spec: str | os.PathLike[str] | Weights | Source, model: str | None = None, *, base_url: str | None = None,
         progress: bool = True, sha256: str | None = None) -> TrainedWeights:
    """Read and verify the weights ``spec`` names (:func:`resolve`), without building a model. A weights file is
    checked against ``sha256`` where given (a run's summary records it), else against the ``.sha256`` beside it."""
    src = spec if isinstance(spec, Source) else resolve(spec, model)
    if src.entry is not None:
        wf = hub.load_entry(src.entry, base_url, progress)
        return TrainedWeights(src.entry.name, "released", wf.state_dict, wf.meta, wf.mean, wf.std, wf.sha256)
    assert src.path is not None
    path = src.path
    if _is_safetensors(path):
        wf = load_weights(path, sha256)
        return TrainedWeights(str(path), "weights", wf.state_dict, wf.meta, wf.mean, wf.std, wf.sha256)
    data, obj = read_torch_bytes(path)  # read once: the checksum and the load share the bytes
    fmt = obj.get("format") if isinstance(obj, dict) else None
    if fmt == CHECKPOINT_FORMAT:
        if not checksum_path(path).exists():
            warnings.warn(f"{path} has no .sha256 file beside it: its integrity cannot be checked", stacklevel=2)
        state = checkpoint_state(path, data, obj, require_checksum=False)
        return TrainedWeights(str(path), "checkpoint", state["model"], checkpoint_meta(state), state["mean"],
                              state["std"], run_config=dict(state["config"]))
    if fmt == LEGACY_FORMAT:
        wf = legacy_weights(obj)
        return TrainedWeights(str(path), "legacy", wf.state_dict, wf.meta, wf.mean, wf.std)
    return TrainedWeights(str(path), "state_dict", state_dict_of(obj, path), {})


def _is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte header length, then the JSON header (torch.save files are zip archives)."""
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


@dataclass
class LoadedModel:
    """A model ready for inference (eval mode, CPU) with what its inputs and outputs need."""

    model: nn.Module
    weights: TrainedWeights

    name = property(lambda self: self.weights.name)
    model_kwargs = property(lambda self: self.weights.model_kwargs)
    classes = property(lambda self: self.weights.classes)
    mean = property(lambda self: self.weights.mean)
    std = property(lambda self: self.weights.std)
    view = property(lambda self: self.weights.view)
    kind = property(lambda self: self.weights.kind)
    meta = property(lambda self: self.weights.meta)
    iteration = property(lambda self: self.weights.iteration)
    run_config = property(lambda self: self.weights.run_config)
    sha256 = property(lambda self: self.weights.sha256)

    @property
    def num_classes(self) -> int:
        return int(self.model.get_classifier().out_features)  # type: ignore[operator, union-attr]


def load(spec: str | os.PathLike[str] | Weights | Source, model: str | None = None, *, base_url: str | None = None,
         progress: bool = True, sha256: str | None = None) -> LoadedModel:
    """The network that ``spec`` names (released weights, a run folder, a weights file or a training checkpoint),
    built from the file's own record and loaded, in eval mode. With ``model``, the file must hold that model."""
    tw = read(spec, model, base_url=base_url, progress=progress, sha256=sha256)
    if model is not None and tw.name is not None and model_info(model).name != tw.name:
        raise ResNetLabError(f"{tw.source} holds a {tw.name}, not a {model}: create_model({tw.name!r}, weights=...)")
    return LoadedModel(tw.build(), tw)


def create_model(name: str, weights: str | os.PathLike[str] | Weights | None = None, *, pretrained: bool = False,
                 base_url: str | None = None, progress: bool = True, **overrides: Any) -> nn.Module:
    """Build a registered model; with ``weights`` (a released name, its tag, ``"DEFAULT"``, a ``.safetensors`` file
    or a run folder) or ``pretrained=True`` (the model's default weights), load them. With weights, ``overrides``
    must match the file (to change the head, call ``reset_classifier(k)`` on the loaded model)."""
    if pretrained and weights is None:
        weights = "DEFAULT"
    if weights is None:
        return _build(name, **overrides)
    loaded = load(weights, name, base_url=base_url, progress=progress)
    net, stored = loaded.model, loaded.model_kwargs
    info = model_info(name)
    defaults = {k: p.default for fn in (type(net).__init__, info.builder)  # the builder's defaults win
                for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}
    clash = {k: v for k, v in overrides.items() if stored.get(k, info.kwargs.get(k, defaults.get(k))) != v}
    if clash:
        raise ResNetLabError(f"{weights} were trained with {stored}; {clash} cannot change when loading them "
                             "(build with weights, then call reset_classifier(num_classes) to fine-tune a new head)")
    return net
