"""A fast inference path: BN folded into the preceding conv, channels_last, bf16 where accuracy holds.

``inference_copy`` is what ``resnetlab eval``, ``predict`` and the evaluations during training run (under autocast at
their precision); ``InferenceModel`` wraps it with autocast for Python users. In bf16 the conv and linear weights are
stored in bf16: autocast would otherwise cast every weight again on every call (about 10% of ResNet-56's inference
time), and the numbers are the same, since autocast computes those layers from the same bf16-rounded weights.
Folding is exact algebra (eval-mode BN is an affine map per channel):
``bn(conv(x)) = conv'(x)`` with ``w' = w * g / sqrt(v + eps)`` and ``b' = (b - m) * g / sqrt(v + eps) + beta``.
Only a BN that directly follows a conv is folded; the pre-activation nets' BNs come *before* their convs (with a
ReLU between) and stay as they are.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import Tensor, nn


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv computing ``bn(conv(x))`` in eval mode."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)  # [C_out]
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    fused = fused.to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(conv.weight.detach() * scale.view(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


def _conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) child names where the BN directly follows the conv, for one module."""
    children = dict(module.named_children())
    pairs = []
    if isinstance(module, nn.Sequential):
        names = list(children)
        for a, b in itertools.pairwise(names):
            if isinstance(children[a], nn.Conv2d) and isinstance(children[b], nn.BatchNorm2d):
                pairs.append((a, b))
    for a, b in getattr(module, "conv_bn_pairs", ()):  # declared by the ResNet blocks and stems
        if isinstance(children.get(a), nn.Conv2d) and isinstance(children.get(b), nn.BatchNorm2d):
            pairs.append((a, b))
    return pairs


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with every conv->BN pair fused into one conv; the BN becomes Identity."""
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        for conv_name, bn_name in _conv_bn_pairs(module):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            fused = _fold(conv, bn)
            if isinstance(module, nn.Sequential):
                module._modules[conv_name] = fused
                module._modules[bn_name] = nn.Identity()
            else:
                setattr(module, conv_name, fused)
                setattr(module, bn_name, nn.Identity())
    return model


COMPUTE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def inference_copy(model: nn.Module, precision: str = "fp32", channels_last: bool = True,
                   device: torch.device | str | None = None) -> nn.Module:
    """A copy of ``model`` for inference: BN folded, channels_last, and conv/linear weights in the compute dtype of
    ``precision`` (fp32, bf16 or fp16; run it under autocast at that precision). Other layers (the unfolded BNs of
    the pre-activation nets) keep fp32 parameters, as under autocast."""
    if precision not in COMPUTE_DTYPES:
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    net = fold_batchnorm(model)
    if device is not None:
        net = net.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if precision != "fp32":
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.to(COMPUTE_DTYPES[precision])
    return net


class InferenceModel(nn.Module):
    """``model`` prepared for inference: BN folded, channels_last, optional bf16 autocast; outputs fp32 logits."""

    def __init__(self, model: nn.Module, precision: str = "bf16", channels_last: bool = True,
                 fold_bn: bool = True) -> None:
        super().__init__()
        if fold_bn:
            self.net = inference_copy(model, precision, channels_last)
        else:
            net = copy.deepcopy(model).eval()
            self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self.channels_last = channels_last
        self.precision = precision

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.precision == "fp32":
            return self.net(x)
        with torch.autocast(x.device.type, dtype=COMPUTE_DTYPES[self.precision]):
            return self.net(x).float()
