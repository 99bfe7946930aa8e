"""The real CIFAR-10 copies beside the clone: the official python release (../shared/data/cifar10, or
$RESNETLAB_CIFAR10) read end to end, and the JPEG copy (../shared/data/cifar10-jpeg, or $RESNETLAB_CIFAR10_JPEG; slow:
decodes 60,000 images once).

Skipped where a copy is absent, except in CI (CI is set), where its absence fails (``data_utils.real_data``)."""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path

import pytest
import torch

from data_utils import DEFAULT_CIFAR10, DEFAULT_CIFAR10_JPEG, real_data
from resnetlab.data import load_dataset, make_bundle
from resnetlab.data.datasets import content_digest
from resnetlab.data.known import data_name

# The content digest of the official CIFAR-10, its images sorted by their official file names in each split: the
# digest every run on the official data is keyed by. A change here moves every official run's key.
OFFICIAL_DIGEST = "3760f8eda6189dee5136e2a2267f531f141230cdd3ee1f46bcad7e8ea76dc42f"

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.slow
def test_the_official_release_is_read_for_real() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every batch has its file names: no "file order kept" warning
        arrays = load_dataset(real_data("cifar10"), progress=False)
    assert arrays.classes == CLASSES
    assert arrays.train_x.shape == (50_000, 3, 32, 32) and arrays.train_x.dtype == torch.uint8
    assert arrays.test_x.shape == (10_000, 3, 32, 32) and arrays.test_y.dtype == torch.int64
    assert torch.bincount(arrays.train_y).tolist() == [5000] * 10
    assert torch.bincount(arrays.test_y).tolist() == [1000] * 10
    # the official training set's per-channel mean of [0, 1] pixels: R, G, B planes in that order
    means = (arrays.train_x.double().mean(dim=(0, 2, 3)) / 255).tolist()
    assert [round(m, 4) for m in means] == [0.4914, 0.4822, 0.4465]
    assert content_digest(arrays) == OFFICIAL_DIGEST
    assert data_name(OFFICIAL_DIGEST) == "cifar10"
    # the stratified 45k/5k split of the paper's schedule search: 500 of each class held out
    bundle = make_bundle(arrays, val_size=5000, seed=0)
    assert torch.bincount(bundle.val_y).tolist() == [500] * 10 and bundle.train_x.shape[0] == 45_000


@pytest.mark.slow
def test_real_cifar10_jpeg_loads_and_caches(tmp_path: Path) -> None:
    real = real_data("cifar10-jpeg")
    t0 = time.perf_counter()
    arrays = load_dataset(real, cache_dir=tmp_path, progress=False)
    decode_s = time.perf_counter() - t0
    assert arrays.classes == CLASSES
    assert arrays.train_x.shape == (50_000, 3, 32, 32) and arrays.train_x.dtype == torch.uint8
    assert arrays.test_x.shape == (10_000, 3, 32, 32) and arrays.test_x.dtype == torch.uint8
    assert torch.bincount(arrays.train_y).tolist() == [5000] * 10
    assert torch.bincount(arrays.test_y).tolist() == [1000] * 10
    # CIFAR-10's well-known channel means (R 125.3, G 123.0, B 113.9): RGB order, not BGR; no transposition.
    means = arrays.train_x.double().mean(dim=(0, 2, 3))
    assert torch.allclose(means, torch.tensor([125.3, 123.0, 113.9], dtype=torch.float64), atol=1.5), means

    t0 = time.perf_counter()
    again = load_dataset(real, cache_dir=tmp_path, progress=False)
    cached_s = time.perf_counter() - t0
    assert torch.equal(again.train_x, arrays.train_x) and torch.equal(again.test_y, arrays.test_y)
    assert cached_s < 10 and cached_s < decode_s, (decode_s, cached_s)
    print(f"decode {decode_s:.1f} s, from cache {cached_s:.2f} s")

    bundle = make_bundle(arrays, val_size=5000, seed=0)
    assert bundle.train_x.shape[0] == 45_000 and bundle.val_x.shape[0] == 5_000
    assert torch.bincount(bundle.val_y).tolist() == [500] * 10


@pytest.mark.slow
def test_short_resnet20_run_on_real_data_learns(tmp_path: Path) -> None:
    """200 iterations of the paper's recipe (scaled) on the real images: only a learning model gets below 70%."""
    from resnetlab.train import fit, resolve_config

    cfg = resolve_config("cifar10_paper", [f"data={real_data()}", f"cache_dir={tmp_path / 'cache'}", "model=resnet20",
                                           "eval_interval=100", "max_iters=200", "milestones=150,180"])
    result = fit(cfg, tmp_path / "run", progress=False)
    print(f"ResNet-20, 200 iterations: train {result.train_error:.1f}%, val {result.val_error:.1f}%, "
          f"test {result.test_error:.1f}%")
    assert result.test_error is not None and result.test_error < 70.0  # chance is 90%
    assert result.val_error is not None and result.val_error < 70.0


def test_real_data_is_found_by_the_environment_and_missing_data_fails_in_ci(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNETLAB_CIFAR10_JPEG", str(tmp_path))
    monkeypatch.setenv("RESNETLAB_CIFAR10", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=re.escape(f"no CIFAR-10 JPEG copy at {tmp_path}")):
        real_data("cifar10-jpeg")  # a developer's machine without the copy: skipped
    with pytest.raises(pytest.skip.Exception, match=re.escape(f"no official CIFAR-10 at {tmp_path}")):
        real_data()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="RESNETLAB_CIFAR10_JPEG"):
        real_data("cifar10-jpeg")  # CI always has it: its absence is a failure, not a skip
    with pytest.raises(pytest.fail.Exception, match="RESNETLAB_CIFAR10"):
        real_data("cifar10")
    (tmp_path / "train").mkdir()
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"")
    assert real_data("cifar10-jpeg") == tmp_path == real_data("cifar10")
    monkeypatch.delenv("RESNETLAB_CIFAR10_JPEG")
    monkeypatch.delenv("RESNETLAB_CIFAR10")
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if (DEFAULT_CIFAR10_JPEG / "train").is_dir():  # this machine has the copies where the Makefile looks
        assert real_data("cifar10-jpeg") == DEFAULT_CIFAR10_JPEG == shared / "cifar10-jpeg"
    if (DEFAULT_CIFAR10 / "cifar-10-batches-py").is_dir():
        assert real_data() == DEFAULT_CIFAR10 == shared / "cifar10"
