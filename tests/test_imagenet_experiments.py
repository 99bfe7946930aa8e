"""``resnetlab reproduce imagenet-table2 / imagenet-table3`` at the smoke budget on a tiny ImageNet-layout folder
(crops of 32 from shorter sides in [36, 48], so the ImageNet nets run in seconds on a CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagenet_utils import write_imagenet_folder
from png_utils import assert_figure
from resnetlab.cli import main

TINY = ["crop_size=32", "scale_range=36,48", "batch_size=8", "eval_batch_size=30", "workers=0", "mean_images=24"]


def _reproduce(name: str, tree: Path, tmp: Path, *extra: str) -> int:
    args = ["reproduce", name, "--budget", "smoke", "--data", str(tree), "--out", str(tmp / name), "--runs-dir",
            str(tmp / "runs"), "--cache-dir", str(tmp / "cache"), "--no-progress", *extra]
    return main([*args, *[a for s in TINY for a in ("--set", s)]])


def _rows(md: str) -> list[list[str]]:
    lines = [line for line in md.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


@pytest.mark.slow
def test_imagenet_table2_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = write_imagenet_folder(tmp_path / "tiny")
    assert _reproduce("imagenet-table2", tree, tmp_path) == 0
    out = tmp_path / "imagenet-table2"
    md = (out / "results.md").read_text()
    assert "budget: **smoke** (6 iterations per run; the paper's schedule is 600,000)" in md
    rows = _rows(md)
    assert [(r[0], r[1]) for r in rows] == [("plain18", ""), ("resnet18", "A"), ("plain34", ""), ("resnet34", "A")]
    assert [r[7] for r in rows] == ["27.94", "27.88", "28.54", "25.03"]  # Table 2, 10-crop top-1
    assert rows[1][2] == rows[0][2] and rows[3][2] == rows[2][2]  # option A adds no parameters to the plain nets
    payload = json.loads((out / "results.json").read_text())
    assert [r["iterations"] for r in payload["runs"]] == [6] * 4
    assert all(e["images"] == 9 and 0 <= e["top5_10crop"] <= e["top1_10crop"] <= 100 for e in payload["ten_crop"])
    assert len(payload["findings"]) == 3
    assert_figure(out / "fig4.png", (11, 4.2), curves=["C0", "C1"], absent=("C2",))  # 2 panels of 2 nets
    for run in payload["runs"]:
        cfg = json.loads((Path(run["run_dir"]) / "config.json").read_text())
        assert cfg["recipe"] == "imagenet_paper" and cfg["loader"] == "stream" and cfg["lr_schedule"] == "plateau"
        assert (Path(run["run_dir"]) / "eval-10crop.json").is_file()
    capsys.readouterr()
    assert _reproduce("imagenet-table2", tree, tmp_path) == 0  # a rerun reuses the runs and their 10-crop results
    assert capsys.readouterr().out.count("finished, reused") == 4
    assert json.loads((out / "results.json").read_text())["ten_crop"] == payload["ten_crop"]


def test_imagenet_experiments_need_an_image_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "imagenet-table3", "--budget", "smoke", "--out", str(tmp_path / "o"),
                 "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 1  # --data defaults to cifar10
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "ImageNet-layout folder" in err and "--data" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_imagenet_table3_smoke(tmp_path: Path) -> None:
    tree = write_imagenet_folder(tmp_path / "tiny")
    assert _reproduce("imagenet-table3", tree, tmp_path) == 0
    out = tmp_path / "imagenet-table3"
    rows = _rows((out / "results.md").read_text())
    assert [(r[0], r[1]) for r in rows] == [("plain34", ""), ("resnet34", "A"), ("resnet34", "B"), ("resnet34", "C"),
                                            ("resnet50", "B"), ("resnet101", "B"), ("resnet152", "B")]
    assert [r[7] for r in rows] == ["28.54", "25.03", "24.52", "24.19", "22.85", "21.75", "21.43"]
    assert [r[8] for r in rows] == ["10.02", "7.76", "7.46", "7.40", "6.71", "6.05", "5.71"]
    payload = json.loads((out / "results.json").read_text())
    assert len(payload["runs"]) == 7 and len(payload["findings"]) == 5
    # 7 nets, each in the legend (C7 is grey, as text). After 6 iterations the ResNet-34 A/B/C curves can coincide
    # and hide each other (which one shows depends on the numerics), so only the last-drawn curve must be visible.
    assert_figure(out / "table3.png", (5.5, 4.2), curves=["C6"], listed=tuple(f"C{i}" for i in range(7)))


def test_paper_notes_read_the_papers_numbers_from_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from resnetlab.experiments import imagenet
    from resnetlab.models import specs

    note = imagenet.table2_note()  # Table 2: plain-18 27.94, ResNet-18 27.88, plain-34 28.54, ResNet-34 25.03
    assert "higher validation error than plain-18 (28.54 vs 27.94;" in note
    assert "ResNet-34 is 3.51 points better than plain-34 and 2.85 points better than ResNet-18 (25.03 vs 27.88;" \
        in note
    note3 = imagenet.table3_note()
    assert "A 25.03 / B 24.52 / C 24.19 for ResNet-34" in note3 and "with depth: 22.85, 21.75, 21.43." in note3
    assert "VGG-16 (28.07)" in note3
    r18 = specs.PAPER["resnet18"]
    monkeypatch.setitem(specs.PAPER, "resnet18", dataclasses.replace(r18, top1_10crop=28.03))
    assert "3.00 points better than ResNet-18 (25.03 vs 28.03;" in imagenet.table2_note()  # written once, in specs
