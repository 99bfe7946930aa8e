"""A newcomer's first hour at the command line: help that shows defaults and examples, one-line errors that name the
flag to change before any data loads, model names for weights, run folders for checkpoints, fine-tuning on a folder
of mixed-size photos, and nothing left behind by a failed start."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resnetlab
from resnetlab.cli import build_parser, main
from resnetlab.errors import ResNetLabError
from resnetlab.train.config import RECIPE_NOTES, RECIPES, TrainConfig, config_keys
from resnetlab.weights import list_weights, resolve, weights_entry
from resnetlab.weights.files import load_weights
from train_utils import synthetic_arrays, write_image_folder

REPO = Path(__file__).resolve().parents[1]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version_and_help_give_purpose_defaults_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"resnetlab {resnetlab.__version__}\n"
    for name, parser in _subcommands().items():
        text = parser.format_help()
        assert "examples:\n  resnetlab " in text, name
        undocumented = [a.dest for a in parser._actions if not a.help and a.dest != "help"]
        assert undocumented == [], (name, undocumented)
        # each option's default said once, and never as a bare None or an empty list
        formatter = parser._get_formatter()
        for action in parser._actions:
            shown = formatter._expand_help(action) if action.help else ""
            said = shown.count("default")
            assert said <= 1 or "(default:" not in shown.split("default", 1)[1], (name, action.dest, shown)
            assert "(default: None)" not in shown and "(default: [])" not in shown, (name, action.dest, shown)
    train = _subcommands()["train"].format_help()
    assert all(recipe in train for recipe in RECIPES) and "(default: cifar10_paper)" in train
    assert "resnetlab train --keys" in train
    reproduce = _subcommands()["reproduce"].format_help()
    assert "(default: quick)" in reproduce and "(default: cifar10)" in reproduce
    assert "~/.cache/resnetlab" in reproduce  # the real cache folder, not "None"
    assert "RUNS_DIR/<data>/<budget>/" in " ".join(reproduce.split())
    assert set(RECIPE_NOTES) == set(RECIPES)


def test_train_keys_lists_every_config_key_with_its_default_and_meaning(capsys: pytest.CaptureFixture[str]) -> None:
    keys = config_keys()
    sections = TrainConfig().sections()
    every = [f"{s}.{k}" for s, d in sections.items() for k in d if k not in ("recipe", "scale")]
    assert [k for k, _, _ in keys] == every
    assert [k for k, _, meaning in keys if not meaning] == []  # every key says what it is
    assert main(["train", "--keys"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(keys)
    assert out[[k for k, _, _ in keys].index("data.val_size")].split()[:2] == ["data.val_size", "5000"]


def test_a_bad_model_option_is_one_line_before_any_data_loads(capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    missing = tmp_path / "no-such-data"  # were the data read first, the error would be about it
    assert main(["train", "--data", str(missing), "--set", "model.shortcut=D", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: model.shortcut=D does not fit resnet20")
    assert "--set model.KEY=VALUE" in err and "Traceback" not in err
    assert main(["train", "--model", "resnt20", "--data", str(missing), "--out", str(tmp_path / "r")]) == 1
    assert "did you mean resnet20" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_failed_start_leaves_nothing_behind(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "nothing"), "--out", str(run), "--no-progress"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not run.exists()  # no folder, no .lock: the next attempt starts clean


def test_reproduce_with_no_runs_says_where_it_looked_and_writes_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "data", synthetic_arrays(size=32))
    out = tmp_path / "results"
    args = ["reproduce", "table6", "--budget", "smoke", "--data", str(data), "--runs-dir", str(tmp_path / "runs"),
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--set", "val_size=16", "--no-progress"]
    assert main([*args, "--no-train"]) == 1
    err = capsys.readouterr().err
    assert "no finished run of table6 at the smoke budget" in err and str(tmp_path / "runs") in err
    assert "drop --no-train to train its" in err and "results.md" not in " ".join(p.name for p in out.rglob("*"))
    assert main([*args, "--only", "resnet200"]) == 1
    err = capsys.readouterr().err
    assert "--only resnet200: table6 has no such net; did you mean resnet20" in err
    assert not (tmp_path / "runs").exists()  # nothing was trained


def test_weights_by_model_name_default_and_run_folder(tmp_path: Path) -> None:
    assert resolve("resnet20").entry == weights_entry("DEFAULT", "resnet20")
    assert weights_entry("DEFAULT", "resnet20").name == list_weights("resnet20")[0]
    assert resolve("resnet56.DEFAULT").entry == weights_entry(list_weights("resnet56")[0])
    with pytest.raises(ResNetLabError, match="DEFAULT needs a model"):
        resolve("DEFAULT")
    with pytest.raises(ResNetLabError, match="did you mean resnet20"):
        list_weights("resnt20")
    with pytest.raises(ResNetLabError, match=r"resnt20 is neither a file nor released weights; did you mean resnet20"):
        resolve("resnt20")  # --weights / --checkpoint resnt20
    assert list_weights("resnet1202") == []  # a model with no weights released yet
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ResNetLabError, match=r"without a finished run.s model\.safetensors or a checkpoint"):
        resolve(run)
    committed = REPO / weights_entry("resnet20.cifar10jpeg_medium").file
    assert resolve(committed.parent).path == committed  # a run folder: its final weights


def test_eval_takes_a_run_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "data", synthetic_arrays(size=16))
    common = ["--data", str(data), "--cache-dir", str(tmp_path / "c"), "--no-progress"]
    assert main(["train", "--model", "resnet8", *common, "--out", str(tmp_path / "run"), "--set", "val_size=16",
                 "--set", "max_iters=4", "--set", "milestones=2,3", "--set", "batch_size=16",
                 "--set", "precision=fp32"]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "run"), *common]) == 0
    assert "resnet8 at iteration 4 on 32 test images" in capsys.readouterr().out
    # from Python, precision="auto" is made concrete once (it reached the autocast unresolved and raised KeyError)
    from resnetlab.train.report import evaluate_checkpoint

    fp32 = evaluate_checkpoint(tmp_path / "run", str(data), tmp_path / "e1", cache_dir=str(tmp_path / "c"),
                               progress=False)
    auto = evaluate_checkpoint(tmp_path / "run", str(data), tmp_path / "e2", cache_dir=str(tmp_path / "c"),
                               precision="auto", device="cpu", progress=False)
    assert auto["images"] == fp32["images"] == 32


def test_onnx_without_the_export_extra_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    from resnetlab.export import export_model

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(ResNetLabError, match=r"ONNX export needs onnxscript: pip install 'resnetlab\[export\]'"):
        export_model(resnetlab.create_model("resnet8"), "onnx", tmp_path / "m.onnx", 32)
    assert not list(tmp_path.iterdir())


def _photos(root: Path) -> Path:
    """Two classes of photos of mixed sizes and shapes, as a user's folder would hold them."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 8)):
        for c, colour in (("cats", (200, 60, 40)), ("ships", (40, 80, 200))):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                h, w = int(rng.integers(24, 90)), int(rng.integers(24, 90))
                pixels = np.clip(rng.normal(colour, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(d / f"{i:03d}.jpg" if i % 2 else d / f"{i:03d}.png")
    return root


def test_fine_tuning_a_released_net_on_a_folder_of_mixed_size_photos(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos")
    common = ["--recipe", "finetune", "--init", "resnet20", "--data", str(photos), "--cache-dir", str(tmp_path / "c"),
              "--no-progress", "--scale", "0.005"]  # 10 of the recipe's 2,000 iterations
    assert main(["train", *common, "--out", str(tmp_path / "no-size")]) == 1
    assert "--image-size SIDE" in capsys.readouterr().err
    assert main(["train", "--recipe", "finetune", "--data", str(photos), "--out", str(tmp_path / "x")]) == 1
    assert "the finetune recipe starts from trained weights: pass --init" in capsys.readouterr().err
    run = tmp_path / "mine"
    assert main(["train", *common, "--image-size", "32", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "resnet20" and config["init"] == "resnet20"  # --init chose the network
    assert (config["lr"], config["lr_schedule"], config["val_size"], config["batch_size"]) == (0.01, "cosine", 0, 64)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == 10 and "test error" in out
    wf = load_weights(run / "model.safetensors")
    assert wf.meta["classes"] == ["cats", "ships"] and wf.meta["input_size"] == 32
    assert wf.state_dict["fc.weight"].shape == (2, 64)  # a new head for the two classes
    # predict on a photo of another size, with the run's own preprocessing
    assert main(["predict", "--checkpoint", str(run), str(photos / "test" / "cats" / "001.jpg"), "--topk", "2"]) == 0
    assert "cats" in capsys.readouterr().out
    assert torch.isfinite(wf.state_dict["fc.weight"]).all()


def test_a_model_built_with_weights_carries_its_preprocessing_and_class_names() -> None:
    name = list_weights("resnet20")[0]
    model = resnetlab.create_model("resnet20", pretrained=True)
    w = resnetlab.get_weights(name)
    assert model.classes == w.classes == w.meta["dataset"]["classes"] and len(model.classes) == 10
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    assert torch.equal(model.preprocess(photo), w.transforms()(photo))  # resized, center-cropped, mean subtracted
    bare = resnetlab.create_model("resnet20")
    assert list(model.state_dict()) == list(bare.state_dict())  # not part of the weights, nor of an export
    with torch.no_grad():
        label = model.classes[int(model(model.preprocess(photo)[None]).argmax())]
    assert label in model.classes


@pytest.mark.slow
def test_reproduce_from_another_folder_finds_the_clones_committed_runs(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from data_utils import real_data

    jpeg = real_data("cifar10-jpeg")
    monkeypatch.chdir(tmp_path)  # no runs/ here: the clone's committed runs are used
    assert main(["reproduce", "table6", "--budget", "medium", "--data", str(jpeg), "--no-train", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("finished, reused") == 10 and str(REPO / "runs") in out
    result = json.loads((tmp_path / "results" / "cifar10-jpeg" / "table6-medium" / "results.json").read_text())
    assert len(result["runs"]) == 10 and result["missing"] == [] and result["data_name"] == "cifar10-jpeg"


def test_user_facing_text_has_no_project_internal_references() -> None:
    """The README, the docs, the results pages and every command's help speak to users: no commit hashes, issue
    numbers or work-plan words ("campaign", "the targets", "the findings issue", "that commit")."""
    import re

    internal = re.compile(r"\bcommits? [0-9a-f]{7,40}\b|\bissues? #?\d+|that commit|campaign|findings issue|"
                          r"the speed issue|the targets\b", re.I)
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "results").rglob("*.md"))]
    texts = {p.relative_to(REPO).as_posix(): p.read_text() for p in pages}
    texts.update({f"resnetlab {name} --help": parser.format_help() for name, parser in _subcommands().items()})
    hits = [(where, m.group(0)) for where, text in texts.items() for m in internal.finditer(text)]
    assert hits == []
    assert len(pages) > 20  # the pages were found
