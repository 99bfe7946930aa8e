"""Loading weights: wrapper prefixes, actionable mismatch messages, refusal of files that would run code."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from resnetlab import ResNetLabError, create_model
from resnetlab.weights import IncompatibleWeightsError, load_state_dict, strip_prefixes
from resnetlab.weights.files import read_state_dict


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


# --- one format, and the older files that still load ----------------------------------------------------------------
OLD = Path(__file__).parent / "expected" / "old_formats"  # written by resnetlab before the weights package


@pytest.mark.parametrize(("name", "kind", "pad"), [("checkpoint-0000002.pt", "checkpoint", 4),
                                                   ("converted.pt", "legacy", 2)])
def test_files_in_the_older_formats_load_to_the_outputs_they_gave(name: str, kind: str, pad: int) -> None:
    """A checkpoint without the model record (its model is read from its config) and a ``torch.save`` weights file
    from the old ``convert``: the same net, classes and test view, and bit-identical outputs to those stored when
    the old code loaded them."""
    from resnetlab.weights import load

    stored = torch.load(OLD / "outputs.pt", weights_only=True)
    loaded = load(OLD / name)
    assert (loaded.kind, loaded.name, loaded.model_kwargs) == (kind, "resnet8", {"num_classes": 4})
    assert loaded.classes == ["a", "b", "c", "d"] and (loaded.view.crop, loaded.view.pad) == (16, pad)
    with torch.no_grad():
        assert torch.equal(loaded.model(stored["input"]), stored[name])


def test_a_checkpoint_carries_the_weights_files_model_record(tmp_path: Path) -> None:
    """The final checkpoint and model.safetensors record the same model, so a checkpoint rebuilds its net without
    the run's config (taken away here)."""
    from resnetlab.train import fit
    from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint
    from resnetlab.weights import TrainedWeights, load_weights
    from resnetlab.weights.files import checkpoint_meta
    from train_utils import tiny_bundle, tiny_config

    fit(tiny_config(max_iters=4, eval_interval=4, log_interval=2), tmp_path / "run", data=tiny_bundle(),
        progress=False)
    state = load_checkpoint(list_checkpoints(tmp_path / "run")[-1][1])
    del state["config"]
    final = load_weights(tmp_path / "run" / "model.safetensors").meta
    assert checkpoint_meta(state) == {k: v for k, v in final.items() if k not in ("format", "version")}
    net = TrainedWeights("ckpt", "checkpoint", state["model"], checkpoint_meta(state), state["mean"],
                         state["std"]).build()
    assert net.classes == final["classes"] and net.preprocess.transform.crop == final["input_size"]
    for k, v in state["model"].items():
        assert torch.equal(net.state_dict()[k], v), k


def test_convert_writes_the_weights_format_only(tmp_path: Path) -> None:
    from resnetlab.weights.convert import convert_file

    torch.save({"state_dict": {}}, tmp_path / "ref.th")
    with pytest.raises(ResNetLabError, match=r"write the converted weights to a \.safetensors file \(e\.g\. .*out"
                                             r"\.safetensors\)"):
        convert_file("cifar-reference", tmp_path / "ref.th", tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
