"""Loading weights: wrapper prefixes, actionable mismatch messages, refusal of files that would run code."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from resnetlab import ResNetLabError, create_model
from resnetlab.models.weights import IncompatibleWeightsError, load_state_dict, read_state_dict, strip_prefixes


def test_strip_prefixes_handles_ddp_and_compile() -> None:
    sd = {"module._orig_mod.fc.weight": torch.zeros(1), "_orig_mod.module.conv1.weight": torch.zeros(1),
          "bn1.bias": torch.zeros(1)}
    assert set(strip_prefixes(sd)) == {"fc.weight", "conv1.weight", "bn1.bias"}


def test_compiled_and_ddp_wrapped_state_dicts_load() -> None:
    src = create_model("resnet20")
    sd = {f"_orig_mod.{k}": v for k, v in src.state_dict().items()}
    dst = load_state_dict(create_model("resnet20"), sd)
    assert torch.equal(dst.conv1.weight, src.conv1.weight)


def test_class_count_mismatch_is_explained() -> None:
    sd = create_model("resnet20", num_classes=100).state_dict()
    with pytest.raises(IncompatibleWeightsError, match="class count differs: checkpoint 100 vs model 10"):
        load_state_dict(create_model("resnet20"), sd)


def test_other_depth_or_shortcut_is_explained() -> None:
    with pytest.raises(IncompatibleWeightsError, match="missing key"):
        load_state_dict(create_model("resnet32"), create_model("resnet20").state_dict())
    with pytest.raises(IncompatibleWeightsError, match="shortcut option"):
        load_state_dict(create_model("resnet20"), create_model("resnet20", shortcut="B").state_dict())
    with pytest.raises(IncompatibleWeightsError, match="basic vs bottleneck"):
        load_state_dict(create_model("resnet50"), create_model("resnet34").state_dict())


def test_read_state_dict_from_checkpoint_dict(tmp_path: Path) -> None:
    sd = create_model("resnet20").state_dict()
    torch.save({"model": sd, "iteration": 5}, tmp_path / "ckpt.pt")
    assert set(read_state_dict(tmp_path / "ckpt.pt")) == set(sd)


class _RunsCode:
    def __reduce__(self):  # unpickling would call print: weights_only loading must refuse it
        return (print, ("code ran",))


def test_pickle_payload_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pt"
    with path.open("wb") as f:
        pickle.dump({"model": _RunsCode()}, f)
    with pytest.raises(ResNetLabError, match=r"evil\.pt"):
        read_state_dict(path)
    assert "code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 10, None])
def test_corrupt_weights_file_is_named(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "w.pt"
    if content is None:  # truncated real file
        torch.save(create_model("resnet20").state_dict(), path)
        path.write_bytes(path.read_bytes()[:1000])
    else:
        path.write_bytes(content)
    with pytest.raises(ResNetLabError, match=r"w\.pt"):
        read_state_dict(path)
