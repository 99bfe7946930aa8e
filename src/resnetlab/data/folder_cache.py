"""The on-disk cache of decoded image-folder tensors: the cache file naming, and writing and reading the
payload with a SHA-256 over its tensors, so that a damaged cache file is deleted and rebuilt, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from .cache import atomic_write, tensor_digest
from .errors import DataWarning

_CACHE_FORMAT = "resnetlab.imagefolder"
_CACHE_VERSION = 1


def _cache_prefix(root: Path, size: int | None) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", root.resolve().name or "root")[:40]
    where = hashlib.sha256(f"{root.resolve()}\nsize={size}".encode()).hexdigest()[:12]
    return f"imagefolder-{slug}-{where}-"


def _payload_digest(payload: dict[str, Any]) -> str:
    meta = json.dumps({k: payload[k] for k in ("key", "size", "classes", "bad", "n_train")}, sort_keys=True).encode()
    return tensor_digest((payload["train_x"], payload["train_y"], payload["test_x"], payload["test_y"]), meta)


def _read_cache(path: Path, key: str) -> dict[str, Any] | None:
    """The verified payload of cache file ``path``; ``None`` if missing, or if damaged (warn and delete)."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != _CACHE_FORMAT:
            raise ValueError("not a resnetlab image-folder cache")
        if payload.get("version") != _CACHE_VERSION or payload.get("key") != key:
            raise ValueError("written for other data or by another version")
        for name in ("train_x", "train_y", "test_x", "test_y"):
            if not isinstance(payload.get(name), torch.Tensor):
                raise ValueError(f"{name} is missing")
        if _payload_digest(payload) != payload.get("sha256"):
            raise ValueError("checksum mismatch")
        return payload
    except Exception as e:  # torch.load raises many types on damaged files (RuntimeError, EOFError, ...)
        warnings.warn(
            f"image cache {path} is corrupt or unreadable ({type(e).__name__}: {e}); deleting it and "
            "decoding the images again",
            DataWarning,
            stacklevel=3,
        )
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def _write_cache(path: Path, payload: dict[str, Any]) -> None:
    payload = {**payload, "sha256": _payload_digest(payload)}
    try:
        atomic_write(path, lambda f: torch.save(payload, f))
    except (OSError, RuntimeError) as e:
        warnings.warn(
            f"cannot write image cache {path} ({e}); continuing without a cache (pass --cache-dir a writable "
            "folder to avoid decoding every time)",
            DataWarning,
            stacklevel=3,
        )
        return
    # Older caches of the same folder (before files changed) are dead weight: remove them.
    prefix = path.name[: path.name.rindex("-") + 1]
    for old in path.parent.glob(f"{prefix}*.pt"):
        if old != path:
            with contextlib.suppress(OSError):
                old.unlink()
