"""The inference path (BN folded, channels_last, bf16) and activation checkpointing: same results, other costs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from model_utils import calibrate_bn, seeded_input, seeded_model
from resnetlab.inference import InferenceModel, fold_batchnorm


def _bns(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize(("name", "bns_left"), [("resnet20", 0), ("plain20", 0), ("resnet50", 0),
                                                ("preact_resnet110", 109)])
def test_folded_model_computes_the_same_function(name: str, bns_left: int) -> None:
    x = seeded_input(name)
    model = calibrate_bn(seeded_model(name), x)
    folded = fold_batchnorm(model)
    assert _bns(folded) == bns_left  # pre-activation BNs precede their convs: nothing to fold
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(folded(x), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
        torch.testing.assert_close(InferenceModel(model, "fp32")(x), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    assert _bns(model) == _bns(seeded_model(name))  # the original is untouched


def test_bf16_inference_stays_close_to_fp32() -> None:
    x = seeded_input("resnet20", batch=8)
    model = calibrate_bn(seeded_model("resnet20"), x)
    with torch.no_grad():
        ref = model(x)
        out = InferenceModel(model, "bf16")(x)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max().item() < 0.05 * ref.abs().max().item()


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet164"])
def test_activation_checkpointing_changes_nothing_but_memory(name: str) -> None:
    torch.manual_seed(0)
    a = seeded_model(name).train()
    b = copy.deepcopy(a)
    b.set_grad_checkpointing(True)
    x = seeded_input(name, batch=4)
    a(x).logsumexp(1).sum().backward()
    b(x).logsumexp(1).sum().backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=n)
    # BN running statistics are updated once per step, not again by the recomputation
    for (n, u), v in zip(a.named_buffers(), b.buffers(), strict=True):
        assert torch.equal(u, v), n
