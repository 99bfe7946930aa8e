"""Files written so that a crash, a full disk or a second reader never sees half of one, and files that carry their
SHA-256 beside them (``NAME.sha256``, the ``sha256sum`` format). The data, weights and training code all write
through here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "checksum_path", "fsync_dir", "read_checksum", "sha256_hex", "write_checksum"]

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the process's umask, restored at once


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` atomically: ``write`` fills a temp file in the same folder, which is fsynced and
    renamed.

    Readers never see a partly written file: they see either the old file or the complete new one. The temp
    file is removed if anything fails. ``OSError`` propagates to the caller.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from the rest of a team
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entry table to disk (makes a rename durable); a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def checksum_path(path: Path) -> Path:
    """Where the SHA-256 of ``path`` is kept: ``path.sha256`` beside it."""
    return path.with_name(path.name + ".sha256")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_checksum(path: Path, digest: str) -> None:
    """Write ``path.sha256`` (atomically) in the ``sha256sum`` format."""
    atomic_write(checksum_path(path), lambda f: f.write(f"{digest}  {path.name}\n".encode()))


def read_checksum(path: Path) -> str | None:
    """The SHA-256 recorded beside ``path``, or None when there is no (or an empty) ``.sha256`` file."""
    side = checksum_path(path)
    words = side.read_text().split() if side.is_file() else []
    return words[0] if words else None
