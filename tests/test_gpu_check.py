"""benchmarks/gpu_check.py cannot rot: its CPU dry run runs end to end here; and the library trains without
safetensors, as a borrowed GPU machine's own Python may lack it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data_utils import REPO, real_data

SPEED_ROWS = [f"train {m}, {mode}, batch 16" for m in ("resnet8", "resnet14", "resnet20")
              for mode in ("fp32", "bf16 + channels_last", "bf16 + channels_last + compile")]


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu_passes_every_check(tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--data",
                           str(real_data()), "--minutes", "15", "--no-progress", "--out", str(out)],
                          capture_output=True, text=True, timeout=1200, env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[-1].strip(" |")
            for line in out.read_text().splitlines()[4:]}
    assert out.read_text().startswith("gpu_check on CPU (dry run, tiny sizes)") and "0 failed" in out.read_text()
    expected = ["model for the parity checks", "fp32 forward, ResNet-20, 64 test images",
                "fp32 training step, ResNet-20, batch 128", "bf16 autocast vs fp32, top-1 on 200 test images",
                *SPEED_ROWS, "paper schedule, resnet20, 64 iterations", "DDP start, gloo, world of 2"]
    assert list(rows) == expected
    assert set(rows.values()) == {"ok"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the real check would run")
def test_gpu_check_without_a_gpu_says_how_to_dry_run() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cuda"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "--device cpu runs the dry run" in proc.stderr


def test_training_works_without_safetensors(tmp_path: Path) -> None:
    """An import of safetensors that fails: the library imports, trains and warns that no weights file is written."""
    blocker = tmp_path / "block" / "safetensors"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('safetensors is blocked for this test')\n")
    script = (
        "import warnings, sys\n"
        "sys.path.insert(0, 'tests')\n"
        "from train_utils import tiny_bundle, tiny_config\n"
        "from resnetlab.train import fit\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        f"    r = fit(tiny_config(), {str(tmp_path / 'run')!r}, data=tiny_bundle(), progress=False)\n"
        "assert r.summary['weights'] is None, r.summary\n"
        "assert any('safetensors is not installed' in str(x.message) for x in w)\n"
        "print('trained', r.iterations)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "block"), str(REPO / "src")])}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0 and "trained 12" in proc.stdout, proc.stderr[-2000:]
    assert (tmp_path / "run" / "summary.json").is_file() and not (tmp_path / "run" / "model.safetensors").exists()
