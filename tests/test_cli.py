"""The command line: exit codes, messages, the model table, export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnetlab import create_model, list_models
from resnetlab.cli import main


def test_models_table_lists_every_model_and_no_mismatch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--family", "cifar"]) == 0
    out = capsys.readouterr().out
    # ours, the paper's number as Table 6 prints it, the exact reference count and which reference it is
    assert "| resnet110 | 32x32 | 1,727,962 | 1.7M | 1,727,962 | CIFAR reference | 0.253 |  | yes |" in out
    assert "| plain110 | 32x32 | 1,727,962 |  | 1,727,962 | CIFAR reference (= ResNet) |" in out
    assert "| NO |" not in out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("| ")]
    assert [r[0] for r in rows[1:]] == list_models("cifar")
    for source in {r[5] for r in rows[1:] if r[5]}:  # every reference named is explained below the table
        assert f"\n- {source}: " in out, source


def test_bad_flag_exits_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["models", "--no-such-flag"])
    assert exc.value.code == 2


def test_unknown_model_is_one_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["export", "resnet57", "--format", "pt2", "--out", str(tmp_path / "m.pt2")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "6n+2" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_export_pt2_from_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = create_model("resnet20", shortcut="B")
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "w.pt")
    out = tmp_path / "r20.pt2"
    assert main(["export", "resnet20", "--kw", "shortcut=B", "--checkpoint", str(tmp_path / "w.pt"),
                 "--format", "pt2", "--out", str(out)]) == 0
    assert "max |exported - eager|" in capsys.readouterr().out
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.export.load(str(out)).module()(x), model.eval()(x))


def test_console_script_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "resnetlab.cli", "models", "--names-only"], capture_output=True,
                          text=True, check=True)
    assert proc.stdout.split()[:2] == ["resnet20", "resnet32"]


def test_hubconf_loads_local(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    torch.hub.set_dir(str(tmp_path))
    model = torch.hub.load(str(repo), "resnet56", source="local", num_classes=100)
    assert sum(p.numel() for p in model.parameters()) == 853_018 + 90 * 64 + 90
