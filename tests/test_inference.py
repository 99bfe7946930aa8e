"""The inference path (BN folded, channels_last, bf16) and activation checkpointing: same results, other costs."""

from __future__ import annotations

import copy
from functools import partial

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


def _conv_calls(model: nn.Module) -> dict[str, int]:
    """Forward calls of every conv, by name (a checkpointed conv runs twice per step: forward and recomputation)."""
    calls = dict.fromkeys((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), 0)

    def count(name: str, *_: object) -> None:
        calls[name] += 1

    for name, m in model.named_modules():
        if name in calls:
            m.register_forward_hook(partial(count, name))
    return calls


def _same_step_with_and_without_checkpointing(a: nn.Module, x: torch.Tensor) -> tuple[dict[str, int], dict[str, int]]:
    """One training forward/backward of ``a`` and of a checkpointing copy: identical gradients and BN buffers."""
    b = copy.deepcopy(a)
    b.set_grad_checkpointing(True)
    calls_a, calls_b = _conv_calls(a), _conv_calls(b)
    for model in (a, b):
        torch.manual_seed(1)  # the same dropout masks (VGG's classifier)
        model.train()(x).logsumexp(1).sum().backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=n)
    # BN running statistics are updated once per step, not again by the recomputation
    for (n, u), v in zip(a.named_buffers(), b.buffers(), strict=True):
        assert torch.equal(u, v), n
    return calls_a, calls_b


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet164"])
def test_activation_checkpointing_changes_nothing_but_memory(name: str) -> None:
    calls_a, calls_b = _same_step_with_and_without_checkpointing(seeded_model(name), seeded_input(name, batch=4))
    assert set(calls_a.values()) == {1}
    recomputed = {n: calls_b[n] - 1 for n in calls_b}
    assert set(recomputed.values()) == {0, 1} and recomputed["conv1"] == 0  # the stem is not checkpointed
    # Every block is recomputed in the backward pass, up to the last layer whose output it needs (torch stops there:
    # a block's final conv feeds only the addition).
    blocks = {".".join(n.split(".")[:2]) for n in calls_b if n.startswith("layer")}
    assert all(any(recomputed[n] for n in calls_b if n.startswith(f"{b}.")) for b in blocks)


@pytest.mark.parametrize("name", ["vgg16", "vgg19_bn"])
def test_vgg_activation_checkpointing_recomputes_each_feature_block(name: str) -> None:
    """VGG checkpoints its feature blocks (the convs up to each max-pool); the same gradients and BN statistics."""
    model = seeded_model(name)
    model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 16), nn.ReLU(), nn.Dropout(), nn.Linear(16, 10))  # small
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 64, 64, generator=g)  # VGG pools any size to 7x7: 64 keeps this test fast
    calls_a, calls_b = _same_step_with_and_without_checkpointing(model, x)
    assert set(calls_a.values()) == {1} and set(calls_b.values()) == {2}  # every conv is in a checkpointed block
    assert len(model.block_ends) == 5 and model.block_ends[-1] == len(model.features)
    model.set_grad_checkpointing(True)
    calls = _conv_calls(model)
    model.eval()
    with torch.no_grad():
        model(x)
    assert set(calls.values()) == {1}  # evaluation is never checkpointed
