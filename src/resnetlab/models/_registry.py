"""One small model registry: every place that enumerates models (CLI, hub, tests, reports) goes through it."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import ResNetLabError


class UnknownModelError(ResNetLabError, KeyError):
    """An unknown model name; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of a model besides how to build it."""

    name: str
    builder: Callable[..., nn.Module]
    family: str  # "cifar" or "imagenet"
    input_size: int  # training crop side: 32 (CIFAR) or 224 (ImageNet)
    kwargs: dict[str, Any] = field(default_factory=dict)  # fixed arguments of the builder (e.g. depth)

    def build(self, **overrides: Any) -> nn.Module:
        return self.builder(**{**self.kwargs, **overrides})


_REGISTRY: dict[str, ModelInfo] = {}
# Builders for "any depth" names such as resnet26 or plain74 (CIFAR 6n+2): pattern -> (builder, family, size).
_PATTERNS: list[tuple[re.Pattern[str], ModelInfo]] = []


def register_model(
    name: str,
    builder: Callable[..., nn.Module],
    *,
    family: str,
    input_size: int,
    **kwargs: Any,
) -> ModelInfo:
    """Register ``builder(**kwargs, **overrides)`` under ``name``; a duplicate name is an error."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    info = ModelInfo(name, builder, family, input_size, dict(kwargs))
    _REGISTRY[name] = info
    return info


def register_pattern(pattern: str, builder: Callable[..., nn.Module], *, family: str, input_size: int) -> None:
    """Names matching ``pattern`` (one group: the depth) build with ``builder(depth=int(group))``."""
    _PATTERNS.append((re.compile(pattern), ModelInfo(pattern, builder, family, input_size)))


def list_models(family: str | None = None) -> list[str]:
    """Registered model names in registration order, optionally only one family ("cifar" or "imagenet")."""
    return [n for n, i in _REGISTRY.items() if family is None or i.family == family]


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; names like ``resnet26`` resolve through the depth patterns."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for pattern, info in _PATTERNS:
        m = pattern.fullmatch(name)
        if m:
            return ModelInfo(name, info.builder, info.family, info.input_size, {"depth": int(m.group(1))})
    close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}{hint} (`resnetlab models` lists all; any CIFAR depth 6n+2 works as "
        f"resnetN / plainN / preact_resnetN)"
    )


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model (randomly initialised): ``create_model("resnet56", shortcut="B", num_classes=100)``.
    ``resnetlab.create_model`` also takes ``weights=`` (released weights)."""
    return model_info(name).build(**overrides)


# --- released weights: data only (loading, checking and downloading are in resnetlab.pretrained) -----------------
class UnknownWeightsError(ResNetLabError, KeyError):
    """An unknown weights name; the message lists the released ones."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class WeightsEntry:
    """One released weights file: ``name`` is ``"<model>.<tag>"`` (``resnet56.cifar10jpeg_medium``)."""

    name: str
    model: str
    model_kwargs: dict[str, Any]  # what the file was trained with, num_classes included
    file: str  # the same bytes in a clone, relative to the repository root (runs/medium/.../model.safetensors)
    sha256: str
    size: int  # bytes
    meta: dict[str, Any]  # the model card: data, recipe, iterations, test error from this file, cost, command

    @property
    def tag(self) -> str:
        return self.name.partition(".")[2]

    @property
    def url_name(self) -> str:
        """The file's name on the release server: a new file never reuses an old name."""
        return f"{self.name.replace('.', '-')}-{self.sha256[:8]}.safetensors"


_WEIGHTS: dict[str, WeightsEntry] = {}


def register_weights(entry: WeightsEntry) -> WeightsEntry:
    if entry.name in _WEIGHTS:
        raise ValueError(f"weights {entry.name!r} are already registered")
    if entry.name.partition(".")[0] != entry.model:
        raise ValueError(f"weights name {entry.name!r} must start with its model's name {entry.model!r}")
    model_info(entry.model)  # an entry for an unknown model is a bug of the manifest
    _WEIGHTS[entry.name] = entry
    return entry


def list_weights(model: str | None = None) -> list[str]:
    """Released weights names, optionally of one model; the first of a model is its default (``pretrained=True``).
    An unknown model is an error with the close names (a registered model with no weights gives ``[]``)."""
    if model is not None:
        model_info(model)
    return [n for n, e in _WEIGHTS.items() if model is None or e.model == model]


def weights_entry(name: str, model: str | None = None) -> WeightsEntry:
    """The entry of ``name``: a full name (``resnet56.cifar10jpeg_medium``), or with ``model`` given, its tag alone
    (``cifar10jpeg_medium``) or ``"DEFAULT"``."""
    if model is not None and name == "DEFAULT":
        names = list_weights(model)
        if not names:
            raise UnknownWeightsError(f"no released weights for {model} (`resnetlab weights` lists them; released: "
                                      f"{', '.join(sorted({e.model for e in _WEIGHTS.values()})) or 'none'})")
        return _WEIGHTS[names[0]]
    full = name if "." in name or model is None else f"{model}.{name}"
    if full in _WEIGHTS:
        entry = _WEIGHTS[full]
        if model is not None and entry.model != model:
            raise UnknownWeightsError(f"weights {full!r} are for {entry.model}, not {model}; the weights of {model}: "
                                      f"{', '.join(list_weights(model)) or 'none'}")
        return entry
    candidates = list_weights(model) if model is not None and list_weights(model) else list(_WEIGHTS)
    close = difflib.get_close_matches(full, candidates, n=5, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"released: {', '.join(candidates) or 'none'}"
    raise UnknownWeightsError(f"unknown weights {name!r}; {hint} (`resnetlab weights` lists them)")
