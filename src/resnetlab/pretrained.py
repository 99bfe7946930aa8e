"""Released weights in one line: ``resnetlab.create_model("resnet56", weights="resnet56.cifar10jpeg_medium")``.

Where a file comes from, in this order:
1. a clone of the repository: the committed run's ``model.safetensors`` (the same bytes; nothing is downloaded);
2. torch.hub's cache (``<torch.hub.get_dir()>/checkpoints``), from an earlier download;
3. a download from ``base_url`` (the argument, else ``$RESNETLAB_WEIGHTS_URL``, else :data:`DEFAULT_BASE_URL`),
   written to the cache only once complete and checked.

The SHA-256 of the file is checked on every load, a cached or committed file included: ``torch.hub`` checks only
while downloading, and safetensors carries no checksum of its own.
"""

from __future__ import annotations

import hashlib
import http.client
import inspect
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .errors import ResNetLabError
from .models import create_model as _create_model
from .models import model_info
from .models._registry import WeightsEntry, list_weights, weights_entry
from .models.weights import load_state_dict
from .safeweights import WeightsFile, WeightsFileError, load_weights
from .transforms import ImagePreprocess

__all__ = ["BASE_URL_ENV", "DEFAULT_BASE_URL", "Weights", "create_model", "download", "get_weights", "list_weights",
           "load_pretrained"]

# Where the project publishes release files (`resnetlab weights publish DIR` writes what goes there).
DEFAULT_BASE_URL = "https://github.com/resnetlab/resnetlab/releases/download/weights-v1"
BASE_URL_ENV = "RESNETLAB_WEIGHTS_URL"
REPO_ROOT = Path(__file__).resolve().parents[2]  # src/resnetlab/pretrained.py -> the clone's root
CHUNK = 1 << 16


def cache_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def base_url(url: str | None = None) -> str:
    return (url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


@dataclass(frozen=True)
class Weights:
    """A released weights file, torchvision's ``Weights`` in spirit: ``meta`` is its card, ``transforms()`` its
    preprocessing."""

    entry: WeightsEntry

    name = property(lambda self: self.entry.name)
    model = property(lambda self: self.entry.model)
    meta = property(lambda self: self.entry.meta)
    sha256 = property(lambda self: self.entry.sha256)

    def __repr__(self) -> str:
        return f"Weights({self.name!r}, test_error={self.meta.get('test_error')})"

    def path(self, base_url: str | None = None, progress: bool = True) -> Path:
        """A local copy of the file (the clone's, the cache's, or downloaded now); not yet checked."""
        return weights_path(self.entry, base_url, progress=progress)

    def load(self, base_url: str | None = None, progress: bool = True) -> WeightsFile:
        """The verified file: state dict, preprocessing statistics and metadata."""
        return load_entry(self.entry, base_url, progress)

    def transforms(self, base_url: str | None = None) -> ImagePreprocess:
        """The preprocessing these weights were trained with (the training images' per-pixel mean travels in the
        file): uint8 images, or floats in [0, 1], in; the model's input out."""
        return _preprocess(self.load(base_url, progress=False))

    @property
    def classes(self) -> list[str]:
        """The class names, in the order of the model's outputs."""
        return list(self.meta["dataset"]["classes"])


def _preprocess(wf: WeightsFile) -> ImagePreprocess:
    """The preprocessing a weights file was trained with: its mean (and std), its input size, its test view."""
    crop = int(wf.meta["input_size"])
    resize = round(crop * 256 / 224) if wf.meta.get("loader") == "stream" else crop  # Sec. 3.4's test view
    return ImagePreprocess(wf.mean, wf.std, crop, resize)


class Preprocessing:
    """What a model built with weights carries as ``model.preprocess``: images in, the model's input out. A plain
    object around the :class:`ImagePreprocess` module, so it is not part of the model's state dict or exports."""

    def __init__(self, transform: ImagePreprocess) -> None:
        self.transform = transform

    def __call__(self, images: Any) -> Tensor:
        return self.transform(images)

    def __repr__(self) -> str:
        return f"Preprocessing({self.transform!r})"


def get_weights(name: str, model: str | None = None) -> Weights:
    """The released weights ``name`` (``resnet56.cifar10jpeg_medium``; with ``model``, also the tag alone or
    ``"DEFAULT"``)."""
    return Weights(weights_entry(name, model))


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


def _fail(url: str, why: str, target: Path) -> WeightsFileError:
    return WeightsFileError(
        f"cannot download {url}: {why}. Nothing was written. Set ${BASE_URL_ENV} (or base_url=) to a mirror that "
        f"holds {target.name}, or place the file at {target}")


def download(url: str, target: Path, sha256: str, size: int | None = None, *, progress: bool = True,
             timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``target``: streamed into a temporary file beside it, checked (length and SHA-256), then
    renamed. Any failure (no server, HTTP error, truncated, wrong hash, disk full) leaves nothing behind and raises
    one :class:`WeightsFileError`."""
    from tqdm import tqdm

    target = Path(target)
    digest, got = hashlib.sha256(), 0
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else size
                    with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress,
                              leave=False) as bar:
                        while chunk := resp.read(CHUNK):
                            got += len(chunk)
                            if size is not None and got > size:  # a wrong file: stop before it fills the disk
                                raise _fail(url, f"the server sends more than the {size} bytes expected", target)
                            out.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
            except urllib.error.HTTPError as exc:
                raise _fail(url, f"the server answered HTTP {exc.code} {exc.reason}", target) from None
            except urllib.error.URLError as exc:
                raise _fail(url, f"no connection ({exc.reason})", target) from None
            except (http.client.HTTPException, OSError) as exc:  # reset, timeout, TLS error mid-transfer
                raise _fail(url, f"the transfer broke off after {got} bytes ({type(exc).__name__})",
                            target) from None
            out.flush()
            os.fsync(out.fileno())
        if size is not None and got != size:
            raise _fail(url, f"the file is truncated or wrong: {got} bytes received, {size} expected", target)
        if digest.hexdigest() != sha256:
            raise _fail(url, f"its SHA-256 is {digest.hexdigest()[:16]}..., expected {sha256[:16]}... (a wrong or "
                        "damaged file)", target)
        os.replace(tmp, target)
    except OSError as exc:  # disk full, read-only cache: the message names the folder
        raise WeightsFileError(f"cannot write {target}: {exc.strerror or exc}; free space or point "
                               "$TORCH_HOME at a writable folder. Nothing was written") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return target


def load_pretrained(weights: str | os.PathLike[str] | Weights, model: str | None = None, *, base_url: str | None = None,
                    progress: bool = True) -> tuple[nn.Module, WeightsFile]:
    """The network of released weights (a name) or of a resnetlab ``.safetensors`` file, loaded, in eval mode."""
    if isinstance(weights, Weights):
        weights = weights.name
    weights = os.fspath(weights)
    if weights.endswith(".safetensors") or os.sep in weights or Path(weights).is_file():
        wf = load_weights(weights)
        source = weights
    else:
        entry = weights_entry(weights, model)
        wf = load_entry(entry, base_url, progress)
        source = entry.name
    name = wf.meta["model"]
    if model is not None and model_info(model).name != name:
        raise ResNetLabError(f"{source} holds a {name}, not a {model}: create_model({name!r}, weights=...)")
    net = _create_model(name, **wf.meta.get("model_kwargs", {}))
    load_state_dict(net, wf.state_dict, source=source)
    # the preprocessing and class names travel with the model: model(model.preprocess(images)), model.classes[i]
    net.preprocess = Preprocessing(_preprocess(wf))
    net.classes = list(wf.meta["classes"])
    return net.eval(), wf


def create_model(name: str, weights: str | os.PathLike[str] | Weights | None = None, *, pretrained: bool = False,
                 base_url: str | None = None, progress: bool = True, **overrides: Any) -> nn.Module:
    """Build a registered model; with ``weights`` (a released name, its tag, ``"DEFAULT"``, or a ``.safetensors``
    file) or ``pretrained=True`` (the model's default weights), load them. With weights, ``overrides`` must match
    the file (to change the head, call ``reset_classifier(k)`` on the loaded model)."""
    if pretrained and weights is None:
        weights = "DEFAULT"
    if weights is None:
        return _create_model(name, **overrides)
    net, wf = load_pretrained(weights, name, base_url=base_url, progress=progress)
    stored = wf.meta.get("model_kwargs", {})
    info = model_info(name)
    defaults = {k: p.default for fn in (type(net).__init__, info.builder)  # the builder's defaults win
                for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}
    clash = {k: v for k, v in overrides.items() if stored.get(k, info.kwargs.get(k, defaults.get(k))) != v}
    if clash:
        raise ResNetLabError(f"{weights} were trained with {stored}; {clash} cannot change when loading them "
                             "(build with weights, then call reset_classifier(num_classes) to fine-tune a new head)")
    return net
