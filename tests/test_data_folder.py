"""Image-folder trees: exact decoding, layout errors, bad files, and the verified decode cache."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnetlab.data import DataError, DataWarning, load_dataset, load_image_folder
from resnetlab.data import folder as folder_mod

H, W = 6, 8  # image height, width
CLASSES_ON_DISK = ["zebra", "ant", "cat"]  # loaded as sorted: ant, cat, zebra


def _pixels(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def write_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")


def write_tree(root: Path, split_names: tuple[str, str] = ("train", "test")) -> dict[str, list[tuple[np.ndarray, int]]]:
    """Write a small tree of lossless PNGs; return the expected (HWC pixels, label) per split, in load order."""
    expected: dict[str, list[tuple[np.ndarray, int]]] = {}
    sorted_classes = sorted(CLASSES_ON_DISK)
    for split_i, split in enumerate(split_names):
        items = []
        for name in CLASSES_ON_DISK:
            n = 3 if split == "train" else 2
            for j in reversed(range(n)):  # written out of order; loaded sorted by file name
                arr = _pixels(1000 * split_i + 10 * sorted_classes.index(name) + j)
                write_png(root / split / name / f"img{j}.png", arr)
        for label in range(len(sorted_classes)):
            n = 3 if split == "train" else 2
            items += [(_pixels(1000 * split_i + 10 * label + j), label) for j in range(n)]
        expected["train" if split == "train" else "test"] = items
    return expected


def _chw(items: list[tuple[np.ndarray, int]]) -> torch.Tensor:
    return torch.from_numpy(np.stack([a.transpose(2, 0, 1) for a, _ in items]))


def check(arrays, expected) -> None:
    assert arrays.classes == ["ant", "cat", "zebra"]
    for split in ("train", "test"):
        x, y = getattr(arrays, f"{split}_x"), getattr(arrays, f"{split}_y")
        assert x.dtype == torch.uint8 and x.shape == (len(expected[split]), 3, H, W)
        assert y.dtype == torch.int64 and y.tolist() == [label for _, label in expected[split]]
        assert torch.equal(x, _chw(expected[split]))


def load(root: Path, cache: Path, **kw):
    return load_image_folder(root, cache_dir=cache, progress=False, **kw)


def test_pixels_labels_classes(tmp_path: Path) -> None:
    expected = write_tree(tmp_path / "data")
    arrays = load(tmp_path / "data", tmp_path / "cache")
    check(arrays, expected)
    # One spot check spelled out: train image 4 is class "cat" (label 1), file img1.png, pixel (h=2, w=5).
    assert arrays.train_y[4] == 1
    assert arrays.train_x[4, :, 2, 5].tolist() == _pixels(10 * 1 + 1)[2, 5].tolist()


def test_val_split_and_hidden_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    expected = write_tree(root, ("train", "val"))
    (root / "train" / "ant" / ".DS_Store").write_bytes(b"\x00garbage")
    (root / "train" / ".ipynb_checkpoints").mkdir()  # a hidden folder is not a class
    write_png(root / "val" / "cat" / ".hidden" / "x.png", _pixels(5))
    check(load(root, tmp_path / "cache"), expected)
    assert load_dataset(root, cache_dir=tmp_path / "cache", progress=False).classes == ["ant", "cat", "zebra"]


def test_grayscale_and_rgba_become_rgb(tmp_path: Path) -> None:
    root = tmp_path / "data"
    gray = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    rgba = np.dstack([_pixels(1), np.full((H, W), 7, np.uint8)])
    Image.fromarray(gray, mode="L").save(_mk(root / "train" / "a" / "g.png"))
    Image.fromarray(rgba, mode="RGBA").save(_mk(root / "test" / "a" / "c.png"))
    arrays = load(root, tmp_path / "cache")
    assert torch.equal(arrays.train_x[0], torch.from_numpy(np.stack([gray] * 3)))
    assert torch.equal(arrays.test_x[0], torch.from_numpy(rgba[:, :, :3].transpose(2, 0, 1).copy()))


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_pool_decoding_matches_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = write_tree(tmp_path / "data")
    monkeypatch.setattr(folder_mod, "_CHUNK", 2)  # several tasks for the two worker processes
    check(load(tmp_path / "data", tmp_path / "cache", workers=2), expected)


def test_missing_root_and_bad_layouts(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data folder .*nowhere does not exist; pass --data <image-folder root"):
        load(tmp_path / "nowhere", tmp_path / "cache")
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"has no train/ folder; expected an image-folder layout"):
        load(root, tmp_path / "cache")
    (root / "train").mkdir()
    (root / "test").mkdir()
    with pytest.raises(DataError, match=r"train has no class folders"):
        load(root, tmp_path / "cache")
    write_png(root / "train" / "a" / "0.png", _pixels(0))
    write_png(root / "train" / "b" / "0.png", _pixels(1))
    write_png(root / "test" / "a" / "0.png", _pixels(2))
    with pytest.raises(DataError, match=r"same class folders .*missing \['b'\]"):
        load(root, tmp_path / "cache")
    (root / "test" / "b").mkdir()
    with pytest.raises(DataError, match=r"class folder .*test/b holds no images"):
        load(root, tmp_path / "cache")


def _corrupt_files(root: Path) -> list[Path]:
    buf = io.BytesIO()
    Image.fromarray(_pixels(3, 32, 32)).save(buf, format="JPEG", quality=90)
    truncated = root / "train" / "ant" / "broken.jpg"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    text = root / "test" / "zebra" / "notes.txt"
    text.write_text("not an image\n")
    empty = root / "train" / "zebra" / "empty.png"
    empty.write_bytes(b"")
    return [truncated, text, empty]


def test_bad_images_are_named_or_skipped(tmp_path: Path) -> None:
    root = tmp_path / "data"
    expected = write_tree(root)
    bad = _corrupt_files(root)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        load(root, cache)
    message = str(err.value)
    assert "3 unreadable image file(s)" in message and "skip_bad" in message
    for path in bad:
        assert str(path) in message
    with pytest.warns(DataWarning, match=r"skipped 3 unreadable"):
        check(load(root, cache, skip_bad=True), expected)
    # The cache remembers the bad files: without skip_bad the error comes back.
    with pytest.raises(DataError, match="3 unreadable"):
        load(root, cache)


def test_many_bad_images_listed_up_to_ten(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_tree(root)
    for i in range(12):
        (root / "train" / "cat" / f"junk{i:02d}.txt").write_text("x")
    with pytest.raises(DataError) as err:
        load(root, tmp_path / "cache")
    message = str(err.value)
    assert "12 unreadable" in message and "and 2 more" in message
    assert "junk09.txt" in message and "junk10.txt" not in message


def test_sizes_must_match_unless_size_given(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_png(root / "train" / "a" / "0.png", _pixels(0))  # 8 wide, 6 high
    write_png(root / "train" / "a" / "1.png", _pixels(1, h=8, w=4))  # 4 wide, 8 high
    write_png(root / "test" / "a" / "0.png", _pixels(2, h=20, w=30))
    with pytest.raises(DataError, match=r"train/a/1\.png is 4x8 but .*0\.png is 8x6: all images must have"):
        load(root, tmp_path / "cache")
    arrays = load(root, tmp_path / "cache", size=4)
    assert arrays.train_x.shape == (2, 3, 4, 4) and arrays.test_x.shape == (1, 3, 4, 4)
    # 4x8 already has its shorter side at 4: only the center crop (rows 2..5) applies.
    assert torch.equal(arrays.train_x[1], torch.from_numpy(_pixels(1, h=8, w=4)[2:6].transpose(2, 0, 1).copy()))


# --------------------------------------------------------------------------------------------------- cache


def _cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("imagefolder-*.pt"))


def _fail(*args, **kwargs):
    raise AssertionError("the decoder must not run when the cache is valid")


def test_cache_written_then_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, cache = tmp_path / "data", tmp_path / "cache"
    expected = write_tree(root)
    check(load(root, cache), expected)
    assert len(_cache_files(cache)) == 1
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp files left
    monkeypatch.setattr(folder_mod, "_decode_image", _fail)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(load(root, cache), expected)


def test_default_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tree(tmp_path / "data")
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "envcache"))
    load_image_folder(tmp_path / "data", progress=False)
    assert len(_cache_files(tmp_path / "envcache")) == 1


def test_cache_rebuilt_when_files_added_or_changed(tmp_path: Path) -> None:
    root, cache = tmp_path / "data", tmp_path / "cache"
    expected = write_tree(root)
    load(root, cache)
    first = _cache_files(cache)
    # Add a file.
    new = _pixels(77)
    write_png(root / "train" / "zebra" / "img9.png", new)
    arrays = load(root, cache)
    assert arrays.train_x.shape[0] == len(expected["train"]) + 1
    assert torch.equal(arrays.train_x[-1], torch.from_numpy(new.transpose(2, 0, 1).copy()))
    second = _cache_files(cache)
    assert len(second) == 1 and second != first  # new key, the stale cache was removed
    # Change a file's pixels (an edit gives a new mtime; set it explicitly so the test does not depend on
    # the file system's timestamp granularity).
    changed = _pixels(78)
    target = root / "test" / "ant" / "img0.png"
    st = target.stat()
    write_png(target, changed)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    arrays = load(root, cache)
    assert torch.equal(arrays.test_x[0], torch.from_numpy(changed.transpose(2, 0, 1).copy()))
    assert len(_cache_files(cache)) == 1 and _cache_files(cache) != second


def test_corrupt_cache_is_detected_and_rebuilt(tmp_path: Path) -> None:
    root, cache = tmp_path / "data", tmp_path / "cache"
    expected = write_tree(root)
    load(root, cache)
    (path,) = _cache_files(cache)
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = bytes(b ^ 0xFF for b in data[third : 2 * third])
    path.write_bytes(bytes(data))
    with pytest.warns(DataWarning, match="corrupt or unreadable.*deleting it"):
        check(load(root, cache), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache is valid
        check(load(root, cache), expected)


def test_truncated_cache_is_detected_and_rebuilt(tmp_path: Path) -> None:
    root, cache = tmp_path / "data", tmp_path / "cache"
    expected = write_tree(root)
    load(root, cache)
    (path,) = _cache_files(cache)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.warns(DataWarning, match="corrupt or unreadable"):
        check(load(root, cache), expected)


def test_cache_with_altered_pixels_fails_its_checksum(tmp_path: Path) -> None:
    root, cache = tmp_path / "data", tmp_path / "cache"
    expected = write_tree(root)
    load(root, cache)
    (path,) = _cache_files(cache)
    payload = torch.load(path, weights_only=True)
    payload["train_x"][0, 0, 0, 0] ^= 1  # a well-formed file whose content no longer matches its checksum
    torch.save(payload, path)
    with pytest.warns(DataWarning, match="checksum mismatch"):
        check(load(root, cache), expected)
