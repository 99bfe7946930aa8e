"""Checkpoints that survive crashes: atomic writes, a SHA-256 beside each file, weights-only loading, a run lock.

``torch.load`` does not verify the CRCs of its zip archive, so a flipped byte inside tensor data loads silently; the
``.sha256`` file beside every checkpoint catches it. A checkpoint appears under its final name only when complete
(temp file in the same folder, fsync, rename), so a kill at any moment leaves the previous checkpoints intact.
"""

from __future__ import annotations

import contextlib
import errno
import os
from io import BytesIO
from pathlib import Path
from typing import Any

import torch

from .. import io  # writes go through the io module's functions: one place to inject a full disk
from ..errors import ResNetLabError
from ..runfiles import checkpoint_iteration, checkpoint_name, list_checkpoints  # noqa: F401 (re-exported)

# Checkpoints are read where every trained network is (weights/files.py); training writes them here.
from ..weights.files import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointError, load_checkpoint


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """Serialise ``state`` to memory first (a failing object leaves no file), then write ``path`` atomically and
    its checksum beside it. A full disk raises a CheckpointError; earlier checkpoints are untouched."""
    buf = BytesIO()
    try:
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, buf)
    except Exception as exc:  # an object pickle cannot store: nothing was written
        raise CheckpointError(f"could not serialise checkpoint {path}: {type(exc).__name__}: "
                              f"{(str(exc).splitlines() or [''])[0][:200]}; nothing was written and "
                              "earlier checkpoints are intact (this is a bug: please report it)") from exc
    data = buf.getvalue()
    digest = io.sha256_hex(data)
    existed = path.exists()
    try:
        # The checksum goes first: a checkpoint without its checksum is never taken for a good one.
        io.write_checksum(path, digest)
        io.atomic_write(path, lambda f: f.write(data))
    except BaseException as exc:
        if not existed:  # no checksum without its checkpoint (atomic_write already removed its temp file)
            with contextlib.suppress(OSError):
                io.checksum_path(path).unlink()
        if not isinstance(exc, OSError):
            raise
        reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror or str(exc)
        raise CheckpointError(
            f"could not write checkpoint {path}: {reason}. Earlier checkpoints are intact; free space (or choose "
            f"another --out) and continue with `resnetlab train --resume {path.parent}`"
        ) from exc
    return path


def latest_checkpoint(run_dir: Path, log: Any = print) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads and verifies; damaged newer ones are reported (``log``) and skipped."""
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            log(f"warning: skipping {exc}")
    return None


def set_aside_newer(run_dir: Path, iteration: int) -> list[Path]:
    """Rename checkpoints newer than the one a run resumes from (damaged ones) to ``*.damaged``: kept for
    inspection, but never again taken for checkpoints, so pruning cannot keep them in place of good ones."""
    moved = []
    for it, path in list_checkpoints(run_dir):
        if it > iteration:
            for f in (path, io.checksum_path(path)):
                with contextlib.suppress(OSError):
                    f.rename(f.with_name(f.name + ".damaged"))
            moved.append(path)
    return moved


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (checksum files too)."""
    for _, path in list_checkpoints(run_dir)[:-keep]:
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):
            io.checksum_path(path).unlink()


class RunLock:
    """An exclusive lock on a run directory (``RUN_DIR/.lock``), so two processes never train into one run.

    The kernel drops the lock when the process dies (``flock``), so a killed run never leaves a stale lock.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ResNetLabError(
                f"another process (pid {holder}) is training in {self.path.parent}; wait for it to finish or "
                "stop it, or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            # A run that never started (it failed before writing anything) leaves no folder behind, so nothing
            # stands in the way of the next attempt; a run with files keeps its lock file (unlinking a lock that
            # another process may be opening would let two processes hold "the" lock).
            started = any(p.name != ".lock" for p in self.path.parent.iterdir())
            if not started:
                self.path.unlink(missing_ok=True)
            os.close(self.fd)  # closing releases the flock
            self.fd = None
            if not started:
                with contextlib.suppress(OSError):
                    self.path.parent.rmdir()
