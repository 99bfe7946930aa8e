"""Image-folder datasets (``root/train/<class>/*`` and ``root/test/<class>/*``) decoded once and cached.

The layout is the standard one used by ImageNet-style trees::

    root/train/<class>/<image>      every non-hidden file is an image
    root/test/<class>/<image>       (or root/val/<class>/<image> if there is no test/)

Classes are the sorted names of the folders under ``train/``; ``test/`` (or ``val/``) must have the same
folders. Images are decoded with Pillow to RGB uint8 ``[3, H, W]`` in parallel worker processes, then saved to
a cache file keyed by the folder's path, the list of files and each file's size and modification time, so a
second load skips decoding and any change of the data gives a new key. The cache carries a SHA-256 of its
tensors and is verified on every load; a damaged cache file is deleted and rebuilt, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .. import io
from .arrays import SplitArrays
from .cache import resolve_cache_dir, tensor_digest
from .errors import DATA_HINT, DataError, DataWarning

__all__ = ["cache_path", "load_image_folder", "scan_image_folder", "visible_dirs", "walk_files"]

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
        io.atomic_write(path, lambda f: torch.save(payload, f))
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


_SERIAL_BELOW = 2048  # decode smaller trees in-process: starting workers costs more than it saves
_CHUNK = 256  # images per worker task
_MAX_LISTED = 10  # bad files named in an error message


def _layout_hint(root: Path) -> str:
    return (
        f"expected an image-folder layout {root}/train/<class>/<image> and {root}/test/<class>/<image> "
        f"(or val/ instead of test/), or an official CIFAR archive; {DATA_HINT}"
    )


@dataclass(frozen=True)
class FolderLayout:
    """The files of an image-folder tree, in load order (class by class, files sorted by relative path).

    ``train`` and ``test`` hold ``(relative posix path, label)``; ``stats`` holds
    ``(relative path, size in bytes, mtime in ns)`` for every file, used for the cache key.
    """

    root: Path
    classes: list[str]
    test_split: str
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]
    stats: list[tuple[str, int, int]]


def visible_dirs(path: Path) -> list[str]:
    with os.scandir(path) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())


def walk_files(root: Path, rel_dir: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(relative posix path, entry) of every non-hidden non-folder entry under ``root/rel_dir``, recursively,
    unsorted. Shared by the in-memory loader here and the streaming one (``data.stream``)."""
    stack = [rel_dir]
    while stack:
        rel = stack.pop()
        with os.scandir(root / rel) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                if e.is_dir():
                    stack.append(f"{rel}/{e.name}")
                else:
                    yield f"{rel}/{e.name}", e


def _list_class(root: Path, rel_dir: str) -> tuple[list[str], list[tuple[str, int, int]]]:
    """Non-hidden files under ``root/rel_dir`` (recursively), sorted by relative path, with size and mtime."""
    files: list[tuple[str, int, int]] = []
    for rel_e, e in walk_files(root, rel_dir):
        if not e.is_file():
            raise DataError(f"{root / rel_e} is not a regular file (a broken link?); remove it")
        st = e.stat()
        files.append((rel_e, st.st_size, st.st_mtime_ns))
    files.sort()
    return [f[0] for f in files], files


def scan_image_folder(root: Path) -> FolderLayout:
    """Check the layout of an image-folder tree and list its files; problems raise :class:`DataError`."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data folder {root} does not exist; {DATA_HINT}")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder; {_layout_hint(root)}")
    if not (root / "train").is_dir():
        raise DataError(f"{root} has no train/ folder; {_layout_hint(root)}")
    test_split = next((s for s in ("test", "val") if (root / s).is_dir()), None)
    if test_split is None:
        raise DataError(f"{root} has no test/ or val/ folder; {_layout_hint(root)}")
    try:
        classes = visible_dirs(root / "train")
        test_classes = visible_dirs(root / test_split)
    except OSError as e:
        raise DataError(f"cannot list {root}: {e.strerror or e}; check the folder's permissions") from e
    if not classes:
        raise DataError(f"{root}/train has no class folders; {_layout_hint(root)}")
    if test_classes != classes:
        missing = sorted(set(classes) - set(test_classes))
        extra = sorted(set(test_classes) - set(classes))
        raise DataError(
            f"{root}/{test_split} must have the same class folders as {root}/train: "
            f"missing {missing[:_MAX_LISTED]}, extra {extra[:_MAX_LISTED]}"
        )
    stats: list[tuple[str, int, int]] = []
    splits: dict[str, list[tuple[str, int]]] = {"train": [], test_split: []}
    for split, items in splits.items():
        for label, name in enumerate(classes):
            try:
                rels, st = _list_class(root, f"{split}/{name}")
            except OSError as e:
                raise DataError(f"cannot list {root / split / name}: {e.strerror or e}") from e
            if not rels:
                raise DataError(
                    f"class folder {root / split / name} holds no images; every class needs images in both "
                    f"train/ and {test_split}/ ({_layout_hint(root)})"
                )
            items.extend((r, label) for r in rels)
            stats.extend(st)
    return FolderLayout(root, classes, test_split, splits["train"], splits[test_split], stats)


def _cache_key(layout: FolderLayout, size: int | None) -> str:
    h = hashlib.sha256()
    h.update(f"{_CACHE_FORMAT} v{_CACHE_VERSION}\n{layout.root.resolve()}\nsize={size}\n".encode())
    h.update(f"test_split={layout.test_split}\n".encode())
    for rel, nbytes, mtime in layout.stats:
        h.update(f"{rel}\t{nbytes}\t{mtime}\n".encode())
    return h.hexdigest()


def cache_path(root: Path, cache_dir: Path | None = None, size: int | None = None) -> Path:
    """The cache file that :func:`load_image_folder` uses for ``root`` as the tree is now."""
    root = Path(root).expanduser()
    layout = scan_image_folder(root)
    return resolve_cache_dir(cache_dir) / f"{_cache_prefix(root, size)}{_cache_key(layout, size)[:32]}.pt"


# --------------------------------------------------------------------------------------------------- decoding


def _resize_center_crop(im: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` (bilinear, antialiased), then crop the central size x size."""
    w, h = im.size
    if min(w, h) != size:
        scale = size / min(w, h)
        w, h = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((w, h), Image.Resampling.BILINEAR)
    left, top = round((w - size) / 2), round((h - size) / 2)
    return im.crop((left, top, left + size, top + size))


def _decode_image(path: str, size: int | None) -> np.ndarray:
    """Decode one image file to an RGB uint8 array ``[H, W, 3]`` (raises on unreadable files)."""
    with open(path, "rb") as f:
        data = f.read()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "palette images with transparency": harmless for RGB output
        with Image.open(BytesIO(data)) as im:
            im.load()
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            if size is not None:
                rgb = _resize_center_crop(rgb, size)
            return np.asarray(rgb, dtype=np.uint8)


@dataclass
class _Chunk:
    start: int
    images: np.ndarray  # [k, 3, H, W]; rows of bad or mismatched images are zero
    bad: list[tuple[int, str]]  # (index, reason)
    mismatched: list[tuple[int, tuple[int, int]]]  # (index, (width, height))


def _decode_chunk(task: tuple[int, Sequence[str], int | None, tuple[int, int]]) -> _Chunk:
    start, paths, size, (h, w) = task
    out = np.zeros((len(paths), 3, h, w), dtype=np.uint8)
    bad: list[tuple[int, str]] = []
    mismatched: list[tuple[int, tuple[int, int]]] = []
    for i, path in enumerate(paths):
        try:
            arr = _decode_image(path, size)
        except Exception as e:  # Pillow raises many types for bad files (OSError, SyntaxError, ValueError, ...)
            bad.append((start + i, f"{type(e).__name__}: {e}"))
            continue
        if arr.shape[:2] != (h, w):
            mismatched.append((start + i, (arr.shape[1], arr.shape[0])))
            continue
        out[i] = arr.transpose(2, 0, 1)
    return _Chunk(start, out, bad, mismatched)


def _default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not available on macOS / Windows
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _mp_context() -> Any:
    # fork starts workers instantly and does not re-import the caller's __main__; elsewhere use the default.
    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()


def _decode_all(
    root: Path, rels: list[str], size: int | None, workers: int | None, progress: bool
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Decode every file: ``[n, 3, H, W]`` uint8 (bad rows undefined) and the bad files' (index, reason)."""
    paths = [str(root / r) for r in rels]
    n = len(paths)
    bad: list[tuple[int, str]] = []
    # The reference size: the requested size, else that of the first readable image.
    first = 0
    hw: tuple[int, int] | None = None
    if size is not None:
        hw = (size, size)
    else:
        while first < n:
            try:
                h0, w0 = _decode_image(paths[first], None).shape[:2]
                hw = (int(h0), int(w0))
                break
            except Exception as e:
                bad.append((first, f"{type(e).__name__}: {e}"))
                first += 1
        if hw is None:
            return np.zeros((n, 3, 0, 0), dtype=np.uint8), bad
    images = np.empty((n, 3, *hw), dtype=np.uint8)
    tasks = [(s, paths[s : s + _CHUNK], size, hw) for s in range(first, n, _CHUNK)]
    if workers is None:
        workers = 0 if n < _SERIAL_BELOW else _default_workers()
    with tqdm(total=n, initial=first, unit="img", desc=f"decoding {root.name}", disable=not progress) as bar:

        def take(chunk: _Chunk) -> None:
            if chunk.mismatched:
                i, (w, h) = chunk.mismatched[0]
                raise DataError(
                    f"{paths[i]} is {w}x{h} but {paths[first]} is {hw[1]}x{hw[0]}: all images must have the "
                    "same size: resize the shorter side and center-crop every image as it loads, with --image-size "
                    "SIDE (resnetlab train) or size=SIDE (load_dataset)"
                )
            images[chunk.start : chunk.start + len(chunk.images)] = chunk.images
            bad.extend(chunk.bad)
            bar.update(len(chunk.images))

        if workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                take(_decode_chunk(task))
        else:
            try:
                with warnings.catch_warnings():
                    # Python >= 3.12 warns about fork() in a process with threads (torch's pools); the
                    # workers only run Pillow and numpy, so that is safe here.
                    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork.*")
                    pool = _mp_context().Pool(processes=min(workers, len(tasks)))
            except OSError as e:  # e.g. no /dev/shm in a container
                warnings.warn(
                    f"cannot start decoder processes ({e}); decoding in one process",
                    DataWarning,
                    stacklevel=3,
                )
                for task in tasks:
                    take(_decode_chunk(task))
            else:
                with pool:
                    for chunk in pool.imap(_decode_chunk, tasks):
                        take(chunk)
    return images, bad


# --------------------------------------------------------------------------------------------------- loading


def load_image_folder(
    root: Path,
    cache_dir: Path | None = None,
    skip_bad: bool = False,
    size: int | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> SplitArrays:
    """Load an image-folder tree as uint8 tensors, decoding it once and caching the result.

    Args:
        root: folder holding ``train/<class>/*`` and ``test/<class>/*`` (or ``val/<class>/*``). Files and
            folders whose names start with ``.`` are ignored; every other file must be a readable image.
        cache_dir: where the decoded tensors are cached (default ``$RESNETLAB_CACHE`` or
            ``~/.cache/resnetlab``).
        skip_bad: skip unreadable images with a :class:`DataWarning` giving the count, instead of failing.
        size: if given, resize every image's shorter side to ``size`` and center-crop to ``size x size``;
            otherwise all images must have the same size.
        workers: decoder processes (default: one per available core, up to 8; small trees decode
            in-process).
        progress: show a tqdm progress bar while decoding.

    Returns:
        :class:`SplitArrays` with images in class order, files sorted by path within a class.

    Raises:
        DataError: a missing root or ``train/`` folder, empty or mismatched class folders, unreadable images
            (up to 10 paths named, plus the count) unless ``skip_bad``, or images of different sizes.
    """
    root = Path(root).expanduser()
    if size is not None and size <= 0:
        raise DataError(f"image size must be positive, got {size}")
    layout = scan_image_folder(root)
    key = _cache_key(layout, size)
    path = resolve_cache_dir(cache_dir) / f"{_cache_prefix(root, size)}{key[:32]}.pt"
    payload = _read_cache(path, key)
    if payload is None:
        payload = _build(layout, size, key, workers, progress)
        _write_cache(path, payload)
    bad: list[list[str]] = payload["bad"]
    if bad:
        listed = "\n  ".join(f"{root / rel}: {reason}" for rel, reason in bad[:_MAX_LISTED])
        more = f"\n  ... and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        if not skip_bad:
            raise DataError(
                f"{len(bad)} unreadable image file(s) in {root}:\n  {listed}{more}\n"
                "remove or replace them, or pass skip_bad (--skip-bad) to ignore them"
            )
        warnings.warn(
            f"skipped {len(bad)} unreadable image file(s) in {root}:\n  {listed}{more}",
            DataWarning,
            stacklevel=2,
        )
    return SplitArrays(
        payload["train_x"], payload["train_y"], payload["test_x"], payload["test_y"], list(payload["classes"])
    )


def _build(layout: FolderLayout, size: int | None, key: str, workers: int | None, progress: bool) -> dict[str, Any]:
    rels = [r for r, _ in layout.train] + [r for r, _ in layout.test]
    labels = np.array([y for _, y in layout.train] + [y for _, y in layout.test], dtype=np.int64)
    images, bad = _decode_all(layout.root, rels, size, workers, progress)
    keep = np.ones(len(rels), dtype=bool)
    for i, _ in bad:
        keep[i] = False
    n_train = len(layout.train)
    x = torch.from_numpy(images)
    y = torch.from_numpy(labels)
    keep_t = torch.from_numpy(keep)
    train_keep, test_keep = keep_t[:n_train], keep_t[n_train:]
    if images.shape[2] == 0 or not bool(train_keep.any()) or not bool(test_keep.any()):
        listed = "\n  ".join(f"{layout.root / rels[i]}: {reason}" for i, reason in sorted(bad)[:_MAX_LISTED])
        raise DataError(
            f"no readable images in the train or {layout.test_split} split of {layout.root}:\n  {listed}\n"
            "check that the files are images (JPEG, PNG, ...)"
        )
    return {
        "format": _CACHE_FORMAT,
        "version": _CACHE_VERSION,
        "key": key,
        "root": str(layout.root.resolve()),
        "size": size,
        "classes": list(layout.classes),
        "bad": [[rels[i], reason] for i, reason in sorted(bad)],
        "n_train": int(train_keep.sum()),
        "train_x": x[:n_train][train_keep],
        "train_y": y[:n_train][train_keep],
        "test_x": x[n_train:][test_keep],
        "test_y": y[n_train:][test_keep],
    }
