"""The per-file side of a streamed image folder: scanning ``root/train`` and ``root/val`` / ``root/test`` into
per-split file lists, decoding one image file to RGB, reporting unreadable files, and the parameters of the
training augmentation (AlexNet's PCA lighting noise included); :mod:`.stream` re-exports the public names.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import DataError, DataWarning
from .folder import visible_dirs, walk_files

# AlexNet's "standard color augmentation": principal components of ImageNet's RGB pixel covariance (pixels in
# 0..1). Column j of the eigenvector matrix is component j; the noise is eigvec @ (alpha * eigval), alpha ~ N(0, 0.1).
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
_MAX_LISTED = 10
_HINT = "expected root/train/<class>/<image> and root/val/<class>/<image> (or test/ instead of val/)"


# --- the file lists -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileList:
    """Relative paths and labels of one split.

    Stored as numpy arrays, not Python lists: ImageNet's 1.28M paths take ~50 MB, and forked DataLoader workers
    share them as they are (a list's per-object refcounts would be copied page by page into every worker).
    """

    paths: np.ndarray  # bytes ("S"), UTF-8 relative paths
    labels: np.ndarray  # int64

    @classmethod
    def from_items(cls, items: Sequence[tuple[str, int]]) -> FileList:
        paths = np.array([p.encode() for p, _ in items], dtype=np.bytes_)
        return cls(paths, np.array([y for _, y in items], dtype=np.int64))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def path(self, i: int) -> str:
        return bytes(self.paths[i]).decode()

    def subset(self, index: np.ndarray | torch.Tensor) -> FileList:
        index = np.asarray(index, dtype=np.int64)
        return FileList(self.paths[index], self.labels[index])


def _list_files(root: Path, rel_dir: str) -> list[str]:
    """Non-hidden files under ``root/rel_dir`` (recursively), sorted; no stat calls (dirent types suffice)."""
    return sorted(rel for rel, _ in walk_files(root, rel_dir))


@dataclass(frozen=True)
class StreamLayout:
    root: Path
    classes: list[str]
    splits: dict[str, FileList]  # "train" and whichever of "val", "test" exist


def scan_stream_folder(root: str | Path) -> StreamLayout:
    """List ``root/train`` and ``root/val`` / ``root/test`` (class folders must match); problems raise DataError."""
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"data folder {root} {what}; {_HINT}. Pass --data <root> (the imagenet recipes have no "
                        "download: ImageNet must be on disk)")
    if not (root / "train").is_dir():
        raise DataError(f"{root} has no train/ folder; {_HINT}")
    held = [s for s in ("val", "test") if (root / s).is_dir()]
    if not held:
        raise DataError(f"{root} has no val/ or test/ folder; {_HINT}")
    try:
        classes = visible_dirs(root / "train")
        if not classes:
            raise DataError(f"{root}/train has no class folders; {_HINT}")
        splits: dict[str, FileList] = {}
        for split in ["train", *held]:
            if split != "train" and visible_dirs(root / split) != classes:
                theirs = set(visible_dirs(root / split))
                missing = sorted(set(classes) - theirs)[:_MAX_LISTED]
                extra = sorted(theirs - set(classes))[:_MAX_LISTED]
                raise DataError(
                    f"{root}/{split} must have the same class folders as {root}/train: missing {missing}, extra "
                    f"{extra} (ImageNet's val/ comes flat: move each image into its class folder first)"
                )
            items: list[tuple[str, int]] = []
            for label, name in enumerate(classes):
                files = _list_files(root, f"{split}/{name}")
                if not files:
                    raise DataError(f"class folder {root / split / name} holds no images; every class needs images "
                                    f"in train/ and {split}/")
                items += [(f, label) for f in files]
            splits[split] = FileList.from_items(items)
    except OSError as e:
        raise DataError(f"cannot list {root}: {e.strerror or e}; check the folder's permissions") from e
    return StreamLayout(root, classes, splits)


# --- decoding and the training augmentation -------------------------------------------------------------------------
def decode_rgb(path: str | Path, min_side: int | None = None) -> torch.Tensor:
    """Decode an image file to RGB uint8 ``[3, H, W]``; raises on unreadable files.

    With ``min_side``, a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) whose shorter side is still
    >= ``min_side``: a large photo is then never decoded at full size only to be shrunk.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "palette images with transparency": harmless for RGB output
        with Image.open(path) as im:
            if min_side is not None and im.format == "JPEG":
                w, h = im.size
                scale = min_side / min(w, h)
                if scale < 1:
                    im.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
            rgb = im.convert("RGB")
            arr = np.array(rgb, dtype=np.uint8)
    return torch.from_numpy(arr).permute(2, 0, 1)


def lighting_offset(alpha: torch.Tensor) -> torch.Tensor:
    """AlexNet's PCA colour noise for component weights ``alpha`` [3], as an RGB offset in 0..255 pixel units."""
    vec = torch.tensor(IMAGENET_EIGVEC, dtype=torch.float32)
    val = torch.tensor(IMAGENET_EIGVAL, dtype=torch.float32)
    return 255.0 * (vec @ (alpha.float() * val))


@dataclass(frozen=True)
class Augment:
    crop: int = 224
    scale_range: tuple[int, int] = (256, 480)
    flip: bool = True
    lighting: float = 0.1


# --- unreadable files ---------------------------------------------------------------------------------------------
class _BadFiles:
    """Unreadable files seen by this process: an error (default) or, with skip_bad, one warning per file."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad, self.seen = skip_bad, set()

    def check(self, bad: list[tuple[str, str]]) -> None:
        if not bad:
            return
        listed = "\n  ".join(f"{p}: {r}" for p, r in bad[:_MAX_LISTED])
        if not self.skip_bad:
            raise DataError(f"cannot decode {len(bad)} image file(s):\n  {listed}\nremove or replace them, or pass "
                            "--set skip_bad=true to skip unreadable images (each is reported)")
        new = [(p, r) for p, r in bad if p not in self.seen]
        if new:
            self.seen.update(p for p, _ in new)
            warnings.warn("skipped unreadable image file(s):\n  " + "\n  ".join(f"{p}: {r}" for p, r in new),
                          DataWarning, stacklevel=3)
