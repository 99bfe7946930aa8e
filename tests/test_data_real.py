"""The real CIFAR-10 JPEG copy beside the clone, or at $RESNETLAB_CIFAR10_JPEG (slow: decodes 60,000 images once).

Skipped where the copy is absent, except in CI (CI is set), where its absence fails (``data_utils.real_data``)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import torch

from data_utils import DEFAULT_CIFAR10_JPEG, real_data
from resnetlab.data import load_dataset, make_bundle

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.slow
def test_real_cifar10_jpeg_loads_and_caches(tmp_path: Path) -> None:
    real = real_data()
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
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=re.escape(f"no CIFAR-10 JPEG copy at {tmp_path}")):
        real_data()  # a developer's machine without the copy: skipped
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="RESNETLAB_CIFAR10_JPEG"):
        real_data()  # CI always has it: its absence is a failure, not a skip
    (tmp_path / "train").mkdir()
    assert real_data() == tmp_path
    monkeypatch.delenv("RESNETLAB_CIFAR10_JPEG")
    if (DEFAULT_CIFAR10_JPEG / "train").is_dir():  # this machine has the copy where the Makefile looks
        assert real_data() == DEFAULT_CIFAR10_JPEG == Path(__file__).resolve().parents[1].parent / "shared" / "data" \
            / "cifar10-jpeg"
