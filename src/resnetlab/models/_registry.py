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
