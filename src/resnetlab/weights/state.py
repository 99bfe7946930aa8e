"""Fitting a state dict into the zoo's models: prefix stripping and mismatch messages a person can act on."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ..errors import ResNetLabError

# DataParallel/DDP save "module.", torch.compile "_orig_mod.": neither belongs to the architecture.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class IncompatibleWeightsError(ResNetLabError):
    """A state dict that does not fit the model (other architecture, depth, shortcut option or class count)."""


def strip_prefixes(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remove wrapper prefixes (``module.``, ``_orig_mod.``, also nested) from every key."""
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def describe_mismatch(model: nn.Module, state_dict: Mapping[str, Tensor]) -> str | None:
    """None if ``state_dict`` fits ``model`` exactly, else a short explanation of what differs."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [(k, tuple(state_dict[k].shape), tuple(v.shape)) for k, v in own.items()
              if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        return None
    lines = []
    if missing:
        lines.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
    if unexpected:
        lines.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
    for k, theirs, ours in shapes[:3]:
        lines.append(f"{k}: checkpoint {theirs} vs model {ours}")
    fc = [(k, t, o) for k, t, o in shapes if k.endswith(("fc.weight", "classifier.6.weight"))]
    if fc:
        lines.append(f"the class count differs: checkpoint {fc[0][1][0]} vs model {fc[0][2][0]} "
                     "(pass num_classes to match, or reset_classifier() after loading the rest)")
    if any(".downsample." in k for k in missing + unexpected):
        lines.append("shortcut layers differ: check the shortcut option (A/B/C) the checkpoint was trained with")
    if any(".conv3." in k for k in missing + unexpected):
        lines.append("block types differ (basic vs bottleneck): check the depth")
    return "; ".join(lines)


def load_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], strict: bool = True,
                    source: str = "checkpoint") -> nn.Module:
    """Load ``state_dict`` (wrapper prefixes stripped) with an actionable message instead of a size-mismatch trace."""
    state_dict = strip_prefixes(state_dict)
    problem = describe_mismatch(model, state_dict)
    if problem and (strict or "vs model" in problem):
        raise IncompatibleWeightsError(f"{source} does not fit {type(model).__name__}: {problem}")
    model.load_state_dict(state_dict, strict=strict)
    return model
