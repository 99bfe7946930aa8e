"""Where the tests find the real CIFAR-10 copies beside the clone: the official pixels (the project's data, what the
Makefile trains on) and the JPEG copy (the archive of the first results)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_CIFAR10 = SHARED_DATA / "cifar10"  # the Makefile's ../shared/data/cifar10: the official python release
DEFAULT_CIFAR10_JPEG = SHARED_DATA / "cifar10-jpeg"  # the lossy copy the first results were made on
# each copy: (environment variable that moves it, the file or folder that must be in it)
_COPIES = {"cifar10": ("RESNETLAB_CIFAR10", DEFAULT_CIFAR10, "cifar-10-batches-py/data_batch_1"),
           "cifar10-jpeg": ("RESNETLAB_CIFAR10_JPEG", DEFAULT_CIFAR10_JPEG, "train")}


def tracked(under: Path) -> list[Path]:
    """The files git tracks under ``under``: what a clone holds, not the local checkpoints and runs beside them."""
    out = subprocess.run(["git", "ls-files", "-z", "--", under.relative_to(REPO).as_posix()], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return [REPO / f for f in out.split("\0") if f]


def real_data(name: str = "cifar10") -> Path:
    """A real copy of CIFAR-10 where the Makefile finds it (beside the clone), or where its environment variable
    says: ``cifar10`` (the official pixels, $RESNETLAB_CIFAR10) or ``cifar10-jpeg`` ($RESNETLAB_CIFAR10_JPEG).

    Absent: the calling test is skipped on a developer's machine, and fails in CI (CI always has both)."""
    env, default, inside = _COPIES[name]
    path = Path(os.environ.get(env, default))
    if not (path / inside).exists():
        what = "official CIFAR-10" if name == "cifar10" else "CIFAR-10 JPEG copy"
        if os.environ.get("CI"):
            pytest.fail(f"the {what} is not at {path}: set {env}")
        pytest.skip(f"no {what} at {path}")
    return path


def data_of(digest: str | None) -> Path:
    """The real copy a committed run or card was made on, by its data digest."""
    from resnetlab.data.known import known_data

    known = known_data(digest)
    assert known is not None, f"data digest {digest} is not one of the project's data sets"
    return real_data(known.name)
