"""Cache location, atomic file writes and checksums shared by the data loaders.

The cache holds downloads (``cifar-10-python.tar.gz``), safely extracted archives and decoded image-folder
tensors. Its location is, in order of precedence: the ``cache_dir`` argument (the CLI's ``--cache-dir``),
``$RESNETLAB_CACHE``, ``$XDG_CACHE_HOME/resnetlab``, ``~/.cache/resnetlab``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import torch

from .errors import DataError

__all__ = ["default_cache_dir", "file_digest", "resolve_cache_dir", "tensor_digest"]


def default_cache_dir() -> Path:
    """The cache folder used when none is given: ``$RESNETLAB_CACHE`` or ``~/.cache/resnetlab``."""
    env = os.environ.get("RESNETLAB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "resnetlab"
    return Path.home() / ".cache" / "resnetlab"


def resolve_cache_dir(cache_dir: Path | str | None) -> Path:
    """``cache_dir`` as an expanded path, or :func:`default_cache_dir` when it is ``None``."""
    return default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()


def file_digest(path: Path, algorithm: str = "md5", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file's bytes, read in chunks; unreadable files raise :class:`DataError`."""
    h = hashlib.new(algorithm)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(chunk_size):
                h.update(chunk)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}; check that the file exists and is readable") from e
    return h.hexdigest()


def tensor_digest(tensors: Iterable[torch.Tensor], extra: bytes = b"") -> str:
    """SHA-256 over the dtype, shape and raw bytes of each tensor (in order), then ``extra``."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            # A flat uint8 view of the storage works for every dtype and avoids a copy.
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    h.update(extra)
    return h.hexdigest()
