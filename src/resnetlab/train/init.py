"""``resnetlab train --init NAME_OR_FILE``: start a run from trained weights (fine-tuning).

The backbone must be the same network: where the source records what it was trained as (released weights, a
``.safetensors`` file, a resnetlab checkpoint or converted file), another model or other options than the class
count are refused, even when the tensors happen to fit (plain-20 and ResNet-20 with option A have the same
parameters). The classifier is kept when the class counts agree and replaced by a new, randomly initialised head
when they differ (CIFAR-10 weights fine-tuned on CIFAR-100), which the run's log says. Only a new run is
initialised: a resumed one continues from its checkpoint and never reads the source again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ResNetLabError
from ..weights import IncompatibleWeightsError, TrainedWeights, load_state_dict, read, resolve, strip_prefixes
from .config import TrainConfig


def read_init(source: str) -> TrainedWeights:
    """The weights ``source`` names (released weights, a run folder, a weights file, a resnetlab checkpoint or a bare
    state dict), read and verified; ``.name`` and ``.model_kwargs`` say what they were trained as, where recorded."""
    try:
        src = resolve(source)
    except ResNetLabError as exc:
        if Path(source).exists():  # a run folder without weights: its own message
            raise
        at = str(exc).find("did you mean")  # the resolver's suggestions, when it has any
        hint = str(exc)[at:] if at >= 0 else "`resnetlab weights` lists them"
        raise ResNetLabError(f"--init {source}: no such file and no released weights of that name; {hint}") from None
    return read(src)


def _head_keys(model: nn.Module) -> tuple[str, str]:
    head = model.get_classifier()  # type: ignore[operator]
    name = next(n for n, m in model.named_modules() if m is head)
    return f"{name}.weight", f"{name}.bias"


def initialise(model: nn.Module, cfg: TrainConfig, source: str) -> str:
    """Load ``source`` into ``model`` (in place); returns the sentence the run's log shows."""
    tw = read_init(source)
    state, trained_as = tw.state_dict, tw.name
    if trained_as is not None:
        theirs_kw = {k: v for k, v in tw.model_kwargs.items() if k != "num_classes"}
        ours_kw = {k: v for k, v in cfg.model.options.items() if k != "num_classes"}
        if trained_as != cfg.model.name or theirs_kw != ours_kw:
            def desc(name: str, kw: dict[str, Any]) -> str:
                return name + (f" ({', '.join(f'{k}={v}' for k, v in kw.items())})" if kw else "")

            raise IncompatibleWeightsError(
                f"--init {source} holds a {desc(trained_as, theirs_kw)}, not a {desc(cfg.model.name, ours_kw)}: train "
                f"--model {trained_as}{''.join(f' --set model.{k}={v}' for k, v in theirs_kw.items())}, or pick "
                f"weights of {cfg.model.name}")
    state = strip_prefixes(state)
    own = model.state_dict()
    keys = _head_keys(model)
    theirs = state.get(keys[0])
    replaced = theirs is not None and tuple(theirs.shape) != tuple(own[keys[0]].shape)
    if replaced:  # the new head keeps its fresh initialisation
        state = {**state, **{k: own[k] for k in keys}}
    load_state_dict(model, state, source=f"--init {source}")
    what = f"{trained_as}, " if trained_as else ""
    if replaced:
        assert theirs is not None
        return (f"initialised from {source} ({what}{theirs.shape[0]} classes); its {theirs.shape[0]}-way head was "
                f"replaced by a new {own[keys[0]].shape[0]}-way head, randomly initialised")
    return f"initialised from {source} ({what}all layers, the head included)"
