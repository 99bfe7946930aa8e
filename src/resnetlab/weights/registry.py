"""The released weights as records: one :class:`WeightsEntry` per file (its card, file and checksum), read from
``released.json`` beside this module, which ``resnetlab weights release`` writes from finished runs."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ResNetLabError
from ..models import model_info

__all__ = ["RELEASED", "UnknownWeightsError", "WeightsEntry", "list_weights", "register_weights", "weights_entry"]

RELEASED = Path(__file__).with_name("released.json")


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


def _register_released() -> None:
    for row in json.loads(RELEASED.read_text())["weights"]:
        register_weights(WeightsEntry(**row))


_register_released()
