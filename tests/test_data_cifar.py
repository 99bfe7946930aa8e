"""The official CIFAR python format: download via file:// URLs, checksums, safe extraction, exact decoding."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from resnetlab.data import (
    CIFAR10_FOLDER,
    CIFAR100_FOLDER,
    DataError,
    DataWarning,
    download,
    load_dataset,
    load_official,
)

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_BATCH = 4  # images per fake training batch (5 batches, as in the official release)
N_TEST = 6


def _rows(n: int, seed: int) -> np.ndarray:
    """``n`` fake images in the official row layout, with a few known pixels set by hand."""
    rows = np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)
    for i in range(n):
        rows[i, 0] = (seed * 7 + i) % 256  # R plane, (h=0, w=0)
        rows[i, 1024 + 5 * 32 + 7] = (200 + i) % 256  # G plane, (h=5, w=7)
        rows[i, 2048 + 31 * 32 + 30] = (13 * i + 1) % 256  # B plane, (h=31, w=30)
    return rows


def _expected(rows: np.ndarray) -> torch.Tensor:
    """The documented layout, spelled out index by index: R plane, G plane, B plane, each 32x32 row-major."""
    out = torch.empty(rows.shape[0], 3, 32, 32, dtype=torch.uint8)
    for c in range(3):
        for h in range(32):
            out[:, c, h, :] = torch.from_numpy(rows[:, c * 1024 + h * 32 : c * 1024 + h * 32 + 32].copy())
    return out


def _dump(path: Path, obj: object, protocol: int = 2) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def write_cifar10(folder: Path) -> dict[str, np.ndarray]:
    """A tiny CIFAR-10 release folder in the official format (bytes keys, as the Python 2 pickles have)."""
    folder.mkdir(parents=True)
    train_rows, train_labels = [], []
    for b in range(1, 6):
        rows = _rows(PER_BATCH, seed=b)
        labels = [(b * 3 + i) % 10 for i in range(PER_BATCH)]
        _dump(
            folder / f"data_batch_{b}",
            {b"batch_label": f"training batch {b} of 5".encode(), b"labels": labels, b"data": rows,
             b"filenames": [f"img_{b}_{i:02d}.png".encode() for i in range(PER_BATCH)]},  # sorted = file order
        )
        train_rows.append(rows)
        train_labels += labels
    test_rows = _rows(N_TEST, seed=99)
    test_labels = [9 - i for i in range(N_TEST)]
    _dump(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": test_labels, b"data": test_rows,
                                  b"filenames": [f"test_{i:02d}.png".encode() for i in range(N_TEST)]})
    _dump(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072})
    return {
        "train_rows": np.concatenate(train_rows),
        "train_labels": np.array(train_labels),
        "test_rows": test_rows,
        "test_labels": np.array(test_labels),
    }


def write_cifar100(folder: Path) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    names = [f"class{i:02d}" for i in range(100)]
    train_rows, test_rows = _rows(7, seed=5), _rows(3, seed=6)
    fine_train, fine_test = [99, 0, 42, 7, 7, 63, 1], [5, 98, 50]
    # str keys and protocol 5, as a Python 3 writer would produce, must work too.
    _dump(folder / "train", {"data": train_rows, "fine_labels": fine_train, "coarse_labels": [0] * 7,
                             "filenames": [f"train_{i}.png" for i in range(7)]}, protocol=5)
    _dump(folder / "test", {"data": test_rows, "fine_labels": fine_test, "coarse_labels": [1] * 3,
                            "filenames": [f"test_{i}.png" for i in range(3)]}, protocol=5)
    _dump(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"c{i}" for i in range(20)]})
    return {
        "train_rows": train_rows,
        "train_labels": np.array(fine_train),
        "test_rows": test_rows,
        "test_labels": np.array(fine_test),
        "names": np.array(names),
    }


def make_tarball(src_parent: Path, folder_name: str, out: Path) -> str:
    """Pack ``src_parent/folder_name`` as ``out`` (.tar.gz) and return its md5."""
    with tarfile.open(out, "w:gz") as tar:
        tar.add(src_parent / folder_name, arcname=folder_name)
    return hashlib.md5(out.read_bytes()).hexdigest()


@pytest.fixture
def cifar10_tarball(tmp_path: Path) -> tuple[Path, str, dict[str, np.ndarray]]:
    expected = write_cifar10(tmp_path / "src" / CIFAR10_FOLDER)
    tarball = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    tarball.parent.mkdir()
    md5 = make_tarball(tmp_path / "src", CIFAR10_FOLDER, tarball)
    return tarball, md5, expected


def _check_cifar10(arrays, expected: dict[str, np.ndarray]) -> None:
    assert arrays.classes == CIFAR10_NAMES
    assert arrays.train_x.dtype == torch.uint8 and arrays.train_x.shape == (5 * PER_BATCH, 3, 32, 32)
    assert arrays.test_x.shape == (N_TEST, 3, 32, 32)
    assert arrays.train_y.dtype == torch.int64
    assert arrays.train_y.tolist() == expected["train_labels"].tolist()
    assert arrays.test_y.tolist() == expected["test_labels"].tolist()
    assert torch.equal(arrays.train_x, _expected(expected["train_rows"]))
    assert torch.equal(arrays.test_x, _expected(expected["test_rows"]))
    # The hand-set pixels, at their documented [c, h, w] positions: image 5 is the 2nd image of batch 2.
    assert int(arrays.train_x[5, 0, 0, 0]) == (2 * 7 + 1) % 256
    assert int(arrays.train_x[5, 1, 5, 7]) == 201
    assert int(arrays.train_x[5, 2, 31, 30]) == 14
    assert int(arrays.test_x[2, 1, 5, 7]) == 202


def test_download_file_url_then_load(cifar10_tarball, tmp_path: Path) -> None:
    tarball, md5, expected = cifar10_tarball
    root = tmp_path / "cache"
    path = download("cifar10", root, url=tarball.as_uri(), md5=md5, progress=False)
    assert path == root / "cifar-10-python.tar.gz"
    assert path.read_bytes() == tarball.read_bytes()
    assert [p.name for p in root.iterdir()] == [path.name]  # no temp files left behind
    _check_cifar10(load_official(path, cache_dir=root, md5=md5), expected)
    # A verified file is reused: the (now unreachable) URL is not contacted again.
    assert download("cifar10", root, url=(tmp_path / "gone.tar.gz").as_uri(), md5=md5) == path


def test_download_checksum_mismatch_deletes_file(cifar10_tarball, tmp_path: Path) -> None:
    tarball, _, _ = cifar10_tarball
    root = tmp_path / "cache"
    with pytest.raises(DataError, match=r"checksum mismatch.*retry"):
        download("cifar10", root, url=tarball.as_uri(), md5="0" * 32, progress=False)
    assert list(root.iterdir()) == []
    # Without an md5 the official checksum applies, which the fake file does not have.
    with pytest.raises(DataError, match="checksum mismatch"):
        download("cifar10", root, url=tarball.as_uri(), progress=False)


def test_download_existing_file_with_wrong_checksum(cifar10_tarball, tmp_path: Path) -> None:
    tarball, md5, _ = cifar10_tarball
    root = tmp_path / "cache"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(b"partial")
    with pytest.raises(DataError, match="delete it and retry"):
        download("cifar10", root, url=tarball.as_uri(), md5=md5, progress=False)


def test_download_without_network_says_how_to_pass_local_copy(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no internet.*--data"):
        download("cifar10", tmp_path, url=(tmp_path / "missing.tar.gz").as_uri(), progress=False)
    with pytest.raises(DataError, match="no internet"):
        download("cifar10", tmp_path, url="http://127.0.0.1:9/cifar-10-python.tar.gz", progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_load_official_folder_parent_and_tarball_agree(cifar10_tarball, tmp_path: Path) -> None:
    tarball, md5, expected = cifar10_tarball
    _check_cifar10(load_official(tmp_path / "src" / CIFAR10_FOLDER), expected)
    _check_cifar10(load_official(tmp_path / "src"), expected)
    with pytest.warns(DataWarning, match="not an official CIFAR release"):
        _check_cifar10(load_official(tarball, cache_dir=tmp_path / "c"), expected)
    extracted = list((tmp_path / "c" / "extracted").iterdir())
    assert len(extracted) == 1 and (extracted[0] / CIFAR10_FOLDER / "data_batch_1").is_file()
    # The extraction is reused (and still verified against the given md5).
    _check_cifar10(load_official(tarball, cache_dir=tmp_path / "c", md5=md5), expected)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_official(tarball, cache_dir=tmp_path / "c", md5="f" * 32)


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    expected = write_cifar100(tmp_path / "src" / CIFAR100_FOLDER)
    tarball = tmp_path / "cifar-100-python.tar.gz"
    md5 = make_tarball(tmp_path / "src", CIFAR100_FOLDER, tarball)
    root = tmp_path / "cache"
    path = download("cifar100", root, url=tarball.as_uri(), md5=md5, progress=False)
    assert path.name == "cifar-100-python.tar.gz"
    arrays = load_official(path, cache_dir=root, md5=md5)
    assert arrays.classes == expected["names"].tolist()
    assert arrays.train_y.tolist() == expected["train_labels"].tolist()
    assert arrays.test_y.tolist() == expected["test_labels"].tolist()
    assert torch.equal(arrays.train_x, _expected(expected["train_rows"]))
    assert torch.equal(arrays.test_x, _expected(expected["test_rows"]))


def _tar_with_member(path: Path, name: str, data: bytes = b"x") -> None:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(f"{CIFAR10_FOLDER}/data_batch_1")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"y"))
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("member", ["../evil", f"{CIFAR10_FOLDER}/../../evil", "/tmp/resnetlab-evil"])
def test_tarball_with_escaping_member_is_refused(tmp_path: Path, member: str) -> None:
    tarball = tmp_path / "in" / "evil.tar.gz"
    tarball.parent.mkdir()
    _tar_with_member(tarball, member)
    cache = tmp_path / "cache"
    with pytest.warns(DataWarning), pytest.raises(DataError, match="unsafe member"):
        load_official(tarball, cache_dir=cache)
    assert not (tmp_path / "evil").exists() and not (cache / "evil").exists()
    assert not Path("/tmp/resnetlab-evil").exists()
    assert list((cache / "extracted").iterdir()) == []  # the partial extraction was removed


def test_tarball_with_symlink_is_refused(tmp_path: Path) -> None:
    tarball = tmp_path / "link.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        info = tarfile.TarInfo(f"{CIFAR10_FOLDER}/data_batch_1")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.warns(DataWarning), pytest.raises(DataError, match="link or special file"):
        load_official(tarball, cache_dir=tmp_path / "cache")


def test_truncated_tarball(cifar10_tarball, tmp_path: Path) -> None:
    tarball, _, _ = cifar10_tarball
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tarball.read_bytes()[: tarball.stat().st_size // 2])
    with pytest.warns(DataWarning), pytest.raises(DataError, match=r"cut\.tar\.gz.*truncated or corrupt"):
        load_official(cut, cache_dir=tmp_path / "cache")


def test_truncated_pickle_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / CIFAR10_FOLDER
    write_cifar10(folder)
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-500])
    with pytest.raises(DataError, match=r"data_batch_3 is truncated, corrupt"):
        load_official(folder)


def test_missing_batch_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / CIFAR10_FOLDER
    write_cifar10(folder)
    (folder / "data_batch_5").unlink()
    with pytest.raises(DataError, match=r"data_batch_5 is missing"):
        load_official(folder)


def test_bad_labels_and_shapes(tmp_path: Path) -> None:
    folder = tmp_path / CIFAR10_FOLDER
    write_cifar10(folder)
    _dump(folder / "test_batch", {b"labels": [10] * N_TEST, b"data": _rows(N_TEST, 1)})
    with pytest.raises(DataError, match=r"test_batch: labels must lie in \[0, 10\)"):
        load_official(folder)
    _dump(folder / "test_batch", {b"labels": [0] * N_TEST, b"data": _rows(N_TEST, 1)[:, :3000]})
    with pytest.raises(DataError, match=r"test_batch: data must be \[N, 3072\]"):
        load_official(folder)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_with_foreign_globals_is_refused_without_running_code(tmp_path: Path) -> None:
    folder = tmp_path / CIFAR10_FOLDER
    write_cifar10(folder)
    marker = tmp_path / "pwned"
    _dump(folder / "data_batch_2", {b"labels": [0], b"data": _Exploit(marker)})
    with pytest.raises(DataError, match=r"data_batch_2 .*global '\w+\.open' is not allowed"):
        load_official(folder)
    assert not marker.exists()


def test_load_dataset_resolves_names_tarballs_and_folders(cifar10_tarball, tmp_path: Path) -> None:
    tarball, md5, expected = cifar10_tarball
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="downloading is disabled"):
        load_dataset("cifar10", cache_dir=cache, download=False)
    _check_cifar10(load_dataset("cifar10", cache_dir=cache, url=tarball.as_uri(), md5=md5, progress=False), expected)
    # Second time from the cache, no download (the URL is gone) and downloads disabled.
    os.unlink(tarball)
    _check_cifar10(load_dataset("CIFAR-10", cache_dir=cache, download=False, md5=md5), expected)
    # Paths: the extracted folder, its parent.
    _check_cifar10(load_dataset(tmp_path / "src" / CIFAR10_FOLDER, cache_dir=cache), expected)
    _check_cifar10(load_dataset(str(tmp_path / "src"), cache_dir=cache), expected)
    with pytest.raises(DataError, match=r"does not exist; pass --data <image-folder root"):
        load_dataset(tmp_path / "nowhere", cache_dir=cache)


def test_damaged_extraction_in_cache_is_redone(cifar10_tarball, tmp_path: Path) -> None:
    tarball, md5, expected = cifar10_tarball
    cache = tmp_path / "cache"
    load_official(tarball, cache_dir=cache, md5=md5)
    (extracted,) = (cache / "extracted").iterdir()
    batch = extracted / CIFAR10_FOLDER / "data_batch_4"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.warns(DataWarning, match=r"data_batch_4 is truncated.*\n.*extracting .* again"):
        _check_cifar10(load_official(tarball, cache_dir=cache, md5=md5), expected)
    assert batch.stat().st_size > 100  # repaired in place


# --- the canonical order: the images' order in the files changes nothing -----------------------------------------
def _reshuffled_copy(src: Path, dst: Path, seed: int, names: bool = True) -> None:
    """The release in ``src`` written again with its images in another order and other batch membership."""
    def load(name: str) -> dict:
        with open(src / name, "rb") as f:
            return pickle.load(f, encoding="bytes")

    dst.mkdir(parents=True)
    train = [load(f"data_batch_{b}") for b in range(1, 6)]
    rows = np.concatenate([d[b"data"] for d in train])
    labels = [label for d in train for label in d[b"labels"]]
    files = [n for d in train for n in d[b"filenames"]]
    order = np.random.default_rng(seed).permutation(len(labels))
    for b, chunk in enumerate(np.array_split(order, 5), 1):
        batch = {b"data": rows[chunk], b"labels": [labels[i] for i in chunk]}
        if names:
            batch[b"filenames"] = [files[i] for i in chunk]
        _dump(dst / f"data_batch_{b}", batch)
    test = load("test_batch")
    back = np.arange(N_TEST)[::-1]
    batch = {b"data": test[b"data"][back], b"labels": [test[b"labels"][i] for i in back]}
    if names:
        batch[b"filenames"] = [test[b"filenames"][i] for i in back]
    _dump(dst / "test_batch", batch)
    (dst / "batches.meta").write_bytes((src / "batches.meta").read_bytes())


def test_a_copy_in_another_order_gives_the_same_arrays_digest_split_and_run_key(tmp_path: Path) -> None:
    from resnetlab.data import make_bundle
    from resnetlab.data.datasets import content_digest
    from resnetlab.experiments.runner import Context, RunSpec, get_budget

    expected = write_cifar10(tmp_path / "a" / CIFAR10_FOLDER)
    _reshuffled_copy(tmp_path / "a" / CIFAR10_FOLDER, tmp_path / "b" / CIFAR10_FOLDER, seed=1)
    a, b = load_official(tmp_path / "a"), load_official(tmp_path / "b")
    # the canonical order is the file names' order (the fixture's names sort in its file order)
    assert torch.equal(a.train_x, _expected(expected["train_rows"]))
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert content_digest(a) == content_digest(b)
    split_a, split_b = make_bundle(a, val_size=5, seed=3), make_bundle(b, val_size=5, seed=3)
    assert torch.equal(split_a.val_x, split_b.val_x) and torch.equal(split_a.train_y, split_b.train_y)
    dirs = [Context("degradation", get_budget("smoke"), str(tmp_path / d), tmp_path / "out", tmp_path / "runs",
                    overrides=["val_size=5"], progress=False).run_dir(RunSpec("resnet20")) for d in "ab"]
    assert dirs[0] == dirs[1] and dirs[0].parent.parent.name == f"data-{content_digest(a)[:8]}"


def test_a_release_without_file_names_keeps_its_file_order_and_says_so(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "a" / CIFAR10_FOLDER)
    _reshuffled_copy(tmp_path / "a" / CIFAR10_FOLDER, tmp_path / "b" / CIFAR10_FOLDER, seed=1, names=False)
    with pytest.warns(DataWarning, match="no 'filenames' entry, so their images keep the order of the files"):
        b = load_official(tmp_path / "b")
    with open(tmp_path / "b" / CIFAR10_FOLDER / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")
    assert torch.equal(b.train_x[:len(first[b"labels"])], _expected(first[b"data"]))  # file order, as written


def test_file_names_named_twice_are_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / CIFAR10_FOLDER
    write_cifar10(folder)
    _dump(folder / "test_batch", {b"labels": [0] * N_TEST, b"data": _rows(N_TEST, 1),
                                  b"filenames": [b"same.png"] * N_TEST})
    with pytest.raises(DataError, match="name some images twice"):
        load_official(folder)
