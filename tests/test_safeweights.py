"""The safetensors weights file every finished run writes: round trip, determinism, and every way it can be bad."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnetlab.models import create_model
from resnetlab.weights import load
from resnetlab.weights.files import WeightsFileError, load_weights, save_weights, weights_bytes


def _save(path: Path) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=4).eval()
    model(torch.randn(8, 3, 16, 16))  # non-trivial BN statistics
    mean = torch.rand(3, 16, 16) * 255
    meta = {"model": "resnet8", "model_kwargs": {"num_classes": 4}, "classes": ["a", "b", "c", "d"]}
    return model, save_weights(path, model.state_dict(), mean, None, meta)


def test_round_trip_keeps_bn_exact_and_kernels_to_float16(tmp_path: Path) -> None:
    model, digest = _save(tmp_path / "m.safetensors")
    wf = load(tmp_path / "m.safetensors")
    loaded = wf.model
    assert wf.sha256 == digest and wf.meta["classes"] == ["a", "b", "c", "d"] and wf.std is None
    for k, v in model.state_dict().items():
        got = loaded.state_dict()[k]
        if v.is_floating_point() and v.dim() >= 2:
            torch.testing.assert_close(got, v.half().float(), rtol=0, atol=0, msg=k)
        else:
            assert torch.equal(got, v), k  # BN statistics, biases and counts are stored as they are
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model(x), rtol=1e-2, atol=1e-2)


def test_the_bytes_are_deterministic(tmp_path: Path) -> None:
    model, _ = _save(tmp_path / "m.safetensors")
    state = model.state_dict()
    a = weights_bytes(state, torch.zeros(3, 1, 1), None, {"model": "resnet8", "x": 1, "b": [1, 2]})
    b = weights_bytes(dict(reversed(list(state.items()))), torch.zeros(3, 1, 1), None,
                      {"b": [1, 2], "x": 1, "model": "resnet8"})
    assert a == b


def test_a_damaged_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    _save(path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsFileError, match="is damaged: its SHA-256"):
        load_weights(path)


def test_truncated_file_with_its_hash_given_and_no_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    digest = _save(path)[1]
    path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(WeightsFileError, match="no SHA-256"):
        load_weights(path)
    assert load_weights(path, digest).sha256 == digest
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsFileError, match="damaged"):
        load_weights(path, digest)
    with pytest.raises(WeightsFileError, match="not a readable safetensors"):
        load_weights(path, require_checksum=False)


def test_a_foreign_safetensors_file_and_a_missing_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(WeightsFileError, match="not a resnetlab weights file"):
        load_weights(tmp_path / "other.safetensors", require_checksum=False)
    with pytest.raises(WeightsFileError, match="cannot read"):
        load_weights(tmp_path / "absent.safetensors")
