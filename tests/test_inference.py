"""The inference path (BN folded, channels_last, bf16) and activation checkpointing: same results, other costs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from model_utils import calibrate_bn, seeded_input, seeded_model
from resnetlab.inference import InferenceModel, fold_batchnorm, inference_copy


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


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet20", "vgg19"])
def test_bf16_weights_compute_exactly_what_autocast_computes(name: str) -> None:
    """Storing conv/linear weights in bf16 is a speed change only: autocast rounds the same weights the same way."""
    x = seeded_input(name, batch=2)
    model = calibrate_bn(seeded_model(name), x)
    stored = inference_copy(model, "bf16")
    assert {p.dtype for m in stored.modules() if isinstance(m, nn.Conv2d | nn.Linear) for p in m.parameters()} == \
        {torch.bfloat16}
    assert all(p.dtype == torch.float32 for m in stored.modules() if isinstance(m, nn.BatchNorm2d)
               for p in m.parameters())  # unfolded BNs (pre-activation nets) stay fp32, as under autocast
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = inference_copy(model, "fp32")(x.contiguous(memory_format=torch.channels_last)).float()
    assert torch.equal(InferenceModel(model, "bf16")(x), expected)


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
