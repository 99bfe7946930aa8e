"""Where the tests find the real CIFAR-10 JPEG copy (the one the Makefile trains on)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CIFAR10_JPEG = REPO.parent / "shared" / "data" / "cifar10-jpeg"  # the Makefile's ../shared/data/cifar10-jpeg


def tracked(under: Path) -> list[Path]:
    """The files git tracks under ``under``: what a clone holds, not the local checkpoints and runs beside them."""
    out = subprocess.run(["git", "ls-files", "-z", "--", under.relative_to(REPO).as_posix()], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return [REPO / f for f in out.split("\0") if f]


def real_data() -> Path:
    """The JPEG copy of CIFAR-10 where the Makefile finds it (beside the clone), or $RESNETLAB_CIFAR10_JPEG.

    Absent: the calling test is skipped on a developer's machine, and fails in CI (CI always has it)."""
    path = Path(os.environ.get("RESNETLAB_CIFAR10_JPEG", DEFAULT_CIFAR10_JPEG))
    if not (path / "train").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the CIFAR-10 JPEG copy is not at {path}: set RESNETLAB_CIFAR10_JPEG")
        pytest.skip(f"no CIFAR-10 JPEG copy at {path}")
    return path
