"""Building blocks shared by the networks: the paper's shortcut options, initialisation, the classifier API."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

Shortcut = Literal["A", "B", "C"]
SHORTCUTS = ("A", "B", "C")


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    # No bias: every conv is followed by BN (Sec. 3.4), whose shift makes a bias redundant.
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A (Sec. 3.3): identity with spatial subsampling and the extra channels zero-padded; no parameters.

    ``pad="end"`` appends the new channels after the old ones; ``pad="both"`` splits them evenly before and after,
    as the best-known CIFAR reimplementation does (needed to load its checkpoints with identical outputs).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, pad: Literal["end", "both"] = "end") -> None:
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"option A cannot shrink channels ({in_ch} -> {out_ch})")
        if pad not in ("end", "both"):
            raise ValueError(f"pad must be 'end' or 'both', got {pad!r}")
        self.in_ch, self.out_ch, self.stride, self.pad = in_ch, out_ch, stride, pad

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]  # the positions a stride-s 1x1 conv would sample
        extra = self.out_ch - self.in_ch
        if extra == 0:
            return x
        front = extra // 2 if self.pad == "both" else 0
        return F.pad(x, (0, 0, 0, 0, front, extra - front))  # (W, H, C) pads: only channels grow

    def extra_repr(self) -> str:
        return f"{self.in_ch}, {self.out_ch}, stride={self.stride}, pad={self.pad!r}"


def make_shortcut(
    option: str, in_ch: int, out_ch: int, stride: int, *, bn: bool = True, pad: Literal["end", "both"] = "end"
) -> nn.Module | None:
    """The shortcut of one block under option A, B or C (Sec. 3.3); None means the plain identity.

    Projections are ``Sequential(conv1x1, BN)`` so their keys are torchvision's ``downsample.0/.1``.
    ``bn=False`` gives the pre-activation nets' bare 1x1 projection (its input is already normalised).
    """
    if option not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of 'A', 'B', 'C' (Sec. 3.3), got {option!r}")
    changes = stride != 1 or in_ch != out_ch
    if option == "C" or (option == "B" and changes):
        conv = conv1x1(in_ch, out_ch, stride)
        return nn.Sequential(conv, nn.BatchNorm2d(out_ch)) if bn else nn.Sequential(conv)
    if changes:  # option A
        return ZeroPadShortcut(in_ch, out_ch, stride, pad)
    return None


def init_weights(model: nn.Module) -> None:
    """He ("MSRA") initialisation (Sec. 3.4, ref. [13], Eq. 10: std = sqrt(2 / (k*k*c_in))); BN at gamma=1, beta=0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ClassifierMixin:
    """The model conveniences every network here has (timm-style names).

    Subclasses define ``forward_features`` (input -> last feature map), ``stage_names`` (modules whose outputs are the
    backbone's stages, reachable with forward hooks) and keep their classifier in ``self.<classifier_name>``.
    """

    classifier_name = "fc"
    num_features: int
    grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing per block in training (timm's name); outputs and gradients are unchanged."""
        self.grad_checkpointing = enable

    def forward_features(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Feature map [B, C, H, W] -> logits [B, num_classes] (or pooled features [B, C] if ``pre_logits``)."""
        x = torch.flatten(self.avgpool(x), 1)  # type: ignore[attr-defined]
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh ``num_classes``-way one (0 gives an identity: features only)."""
        old = self.get_classifier()
        new: nn.Module = nn.Linear(old.in_features, num_classes) if num_classes > 0 else nn.Identity()
        new.in_features = old.in_features  # type: ignore[assignment]  # keep it for later resets
        setattr(self, self.classifier_name, new)
        self.num_classes = num_classes

    def stage_outputs(self, x: Tensor) -> dict[str, Tensor]:
        """Output of every stage, e.g. {"stem": ..., "layer1": ..., ...}, for using the network as a backbone.

        ``stage_modules`` maps each stage to the module whose output it is, so forward hooks reach the same tensors.
        """
        outs: dict[str, Tensor] = {}

        def keep(label: str, _m: nn.Module, _i: tuple[Tensor, ...], out: Tensor) -> None:
            outs[label] = out

        modules = dict(self.named_modules())  # type: ignore[attr-defined]
        handles = [modules[name].register_forward_hook(partial(keep, label))
                   for label, name in self.stage_modules.items()]  # type: ignore[attr-defined]
        try:
            self.forward_features(x)
        finally:
            for h in handles:
                h.remove()
        return outs


@contextlib.contextmanager
def _keep_bn_buffers(module: nn.Module) -> Iterator[None]:
    """Restore every BN buffer on exit: the recomputed forward of activation checkpointing must not update the
    running statistics a second time (the result would differ from a run without checkpointing)."""
    saved = [(b, b.clone()) for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             for b in m.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def run_stage(stage: nn.Sequential, x: Tensor, checkpointing: bool) -> Tensor:
    """Run a stage's blocks; with ``checkpointing`` (training only) keep only block inputs for the backward pass and
    recompute the rest, trading about one extra forward for memory (ResNet-1202 at batch 128 on a CPU)."""
    if not (checkpointing and torch.is_grad_enabled() and stage.training):
        return stage(x)
    return run_checkpointed(stage, x)


def run_checkpointed(blocks: Iterable[nn.Module], x: Tensor) -> Tensor:
    """Run ``blocks`` in turn, each under activation checkpointing (its BN statistics updated once, not twice)."""
    for block in blocks:
        x = checkpoint(block, x, use_reentrant=False,
                       context_fn=partial(_checkpoint_contexts, block))
    return x


def _checkpoint_contexts(block: nn.Module) -> tuple[contextlib.AbstractContextManager[None],
                                                      contextlib.AbstractContextManager[None]]:
    return contextlib.nullcontext(), _keep_bn_buffers(block)
