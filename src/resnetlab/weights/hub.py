"""Where a released weights file comes from, in this order:

1. a clone of the repository: the committed run's ``model.safetensors`` (the same bytes; nothing is downloaded);
2. torch.hub's cache (``<torch.hub.get_dir()>/checkpoints``), from an earlier download;
3. a download from ``base_url`` (the argument, else ``$RESNETLAB_WEIGHTS_URL``, else :data:`DEFAULT_BASE_URL`),
   written to the cache only once complete and checked.

The SHA-256 of the file is checked on every load, a cached or committed file included: ``torch.hub`` checks only
while downloading, and safetensors carries no checksum of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import io
from .files import WeightsFile, WeightsFileError, load_weights
from .registry import WeightsEntry

__all__ = ["BASE_URL_ENV", "DEFAULT_BASE_URL", "REPO_ROOT", "download", "load_entry", "weights_path"]

# Where the project publishes release files (`resnetlab weights publish DIR` writes what goes there).
DEFAULT_BASE_URL = "https://github.com/resnetlab/resnetlab/releases/download/weights-v1"
BASE_URL_ENV = "RESNETLAB_WEIGHTS_URL"
REPO_ROOT = Path(__file__).resolve().parents[3]  # src/resnetlab/weights/hub.py -> the clone's root


def cache_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def base_url(url: str | None = None) -> str:
    return (url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


def _repo_copy(entry: WeightsEntry) -> Path | None:
    path = REPO_ROOT / entry.file
    return path if path.is_file() else None


def weights_path(entry: WeightsEntry, url: str | None = None, *, cache: Path | None = None,
                 progress: bool = True) -> Path:
    """The clone's copy, else the cached one, else download it into the cache."""
    found = _repo_copy(entry)
    if found is not None:
        return found
    target = (cache or cache_dir()) / entry.url_name
    if target.is_file():
        return target
    return download(f"{base_url(url)}/{entry.url_name}", target, entry.sha256, entry.size, progress=progress)


def load_entry(entry: WeightsEntry, url: str | None = None, progress: bool = True, *,
               cache: Path | None = None) -> WeightsFile:
    path = weights_path(entry, url, cache=cache, progress=progress)
    try:
        return load_weights(path, entry.sha256)
    except WeightsFileError as exc:
        if path.parent == (cache or cache_dir()):
            raise WeightsFileError(f"{exc}. It is a cached download: delete {path} and load again to download "
                                   "it anew") from None
        raise


def download(url: str, target: Path, sha256: str, size: int | None = None, *, progress: bool = True,
             timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``target``, checked (length and SHA-256) before it is kept (``io.download``). Any failure (no
    server, HTTP error, truncated, wrong hash, disk full) leaves nothing behind and raises one
    :class:`WeightsFileError` that says where else the file can come from."""
    target = Path(target)
    try:
        return io.download(url, target, algorithm="sha256", expected=sha256, size=size, progress=progress,
                           timeout=timeout)
    except io.DownloadError as exc:
        if exc.kind == "write":  # disk full, read-only cache: the message names the folder
            raise WeightsFileError(f"cannot write {target}: {exc.reason}; free space or point $TORCH_HOME at a "
                                   "writable folder. Nothing was written") from None
        why = {"connect": f"no connection ({exc.reason})", "http": f"the server answered {exc.reason}",
               "hash": f"its SHA-256 is {str(exc.actual)[:16]}..., expected {sha256[:16]}... (a wrong or damaged "
                       "file)"}.get(exc.kind, exc.reason)
        raise WeightsFileError(
            f"cannot download {url}: {why}. Nothing was written. Set ${BASE_URL_ENV} (or base_url=) to a mirror that "
            f"holds {target.name}, or place the file at {target}") from None
