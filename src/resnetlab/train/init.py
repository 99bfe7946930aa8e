"""``resnetlab train --init NAME_OR_FILE``: start a run from trained weights (fine-tuning).

The backbone must fit exactly. The classifier is kept when the class counts agree and replaced by a new, randomly
initialised head when they differ (CIFAR-10 weights fine-tuned on CIFAR-100), which the run's log says.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from ..errors import ResNetLabError
from ..models import list_weights, weights_entry
from ..models.weights import IncompatibleWeightsError, load_state_dict, read_state_dict, strip_prefixes
from ..pretrained import load_entry
from ..safeweights import load_weights


def read_init(source: str) -> tuple[dict[str, Tensor], str | None]:
    """The state dict of ``source`` (a released weights name, a ``.safetensors`` file, a resnetlab checkpoint or
    weights file, a bare state dict) and the model it was trained as, where the file says."""
    path = Path(source)
    if not path.exists() and source in list_weights():
        wf = load_entry(weights_entry(source))
        return wf.state_dict, wf.meta.get("model")
    if not path.is_file():
        raise ResNetLabError(f"--init {source}: no such file and no released weights of that name (`resnetlab "
                             "weights` lists them)")
    if path.suffix == ".safetensors":
        wf = load_weights(path)
        return wf.state_dict, wf.meta.get("model")
    return read_state_dict(path), None


def _head_keys(model: nn.Module) -> tuple[str, str]:
    head = model.get_classifier()  # type: ignore[operator]
    name = next(n for n, m in model.named_modules() if m is head)
    return f"{name}.weight", f"{name}.bias"


def initialise(model: nn.Module, model_name: str, source: str) -> str:
    """Load ``source`` into ``model`` (in place); returns the sentence the run's log shows."""
    state, trained_as = read_init(source)
    state = strip_prefixes(state)
    own = model.state_dict()
    keys = _head_keys(model)
    theirs = state.get(keys[0])
    replaced = theirs is not None and tuple(theirs.shape) != tuple(own[keys[0]].shape)
    if replaced:  # the new head keeps its fresh initialisation
        state = {**state, **{k: own[k] for k in keys}}
    try:
        load_state_dict(model, state, source=f"--init {source}")
    except IncompatibleWeightsError as exc:
        hint = (f" It holds a {trained_as}: train --model {trained_as}, or pick weights of {model_name}"
                if trained_as and trained_as != model_name else "")
        raise IncompatibleWeightsError(f"{exc}.{hint}") from None
    what = f"{trained_as}, " if trained_as else ""
    if replaced:
        assert theirs is not None
        return (f"initialised from {source} ({what}{theirs.shape[0]} classes); its {theirs.shape[0]}-way head was "
                f"replaced by a new {own[keys[0]].shape[0]}-way head, randomly initialised")
    return f"initialised from {source} ({what}all layers, the head included)"
