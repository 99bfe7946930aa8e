"""Train/validation split, normalisation statistics, the data bundle."""

from __future__ import annotations

import pytest
import torch

from resnetlab.data import (
    DataError,
    SplitArrays,
    make_bundle,
    normalize,
    per_channel_stats,
    per_pixel_mean,
    split_train_val,
)


def _labels(per_class: int, classes: int = 10) -> torch.Tensor:
    # Interleaved (0, 1, ..., 9, 0, 1, ...) so that class members are not contiguous.
    return torch.arange(per_class * classes) % classes


def test_paper_split_sizes_and_stratification() -> None:
    labels = _labels(5000)
    train, val = split_train_val(labels, 5000, seed=0)
    assert train.numel() == 45_000 and val.numel() == 5_000
    assert train.dtype == torch.int64 and val.dtype == torch.int64
    assert torch.bincount(labels[val], minlength=10).tolist() == [500] * 10
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(50_000))  # disjoint, complete
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)


def test_split_is_deterministic_and_depends_on_seed() -> None:
    labels = _labels(100)
    a = split_train_val(labels, 100, seed=1)
    b = split_train_val(labels, 100, seed=1)
    c = split_train_val(labels, 100, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    # Not just the first members of each class.
    assert not torch.equal(a[1], torch.arange(100))
    # The global RNG plays no part.
    torch.manual_seed(123)
    d = split_train_val(labels, 100, seed=1)
    assert torch.equal(a[1], d[1])


def test_split_unbalanced_is_proportional_and_plain_split_works() -> None:
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    train, val = split_train_val(labels, 10, seed=0)
    assert torch.bincount(labels[val], minlength=3).tolist() == [6, 3, 1]
    train, val = split_train_val(100, 25, seed=0)
    assert val.numel() == 25 and train.numel() == 75
    assert torch.unique(torch.cat([train, val])).numel() == 100


def test_split_zero_and_invalid_sizes() -> None:
    train, val = split_train_val(_labels(3), 0, seed=0)
    assert train.tolist() == list(range(30)) and val.numel() == 0
    with pytest.raises(DataError, match=r"val_size is .*--set val_size=N"):
        split_train_val(_labels(3), 30, seed=0)
    with pytest.raises(DataError, match=r"val_size is .*--set val_size=N"):
        split_train_val(_labels(3), -1, seed=0)


def test_per_pixel_mean_equals_direct_float64_mean() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (1001, 3, 5, 4), generator=g, dtype=torch.uint8)
    direct = x.to(torch.float64).mean(dim=0)
    got = per_pixel_mean(x, chunk=100)  # several chunks, one partial
    assert got.dtype == torch.float32 and got.shape == (3, 5, 4)
    assert torch.allclose(got.double(), direct, rtol=0, atol=1e-5)
    assert torch.equal(got, direct.float())


def test_per_channel_stats_match_direct_computation() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (301, 3, 4, 4), generator=g, dtype=torch.uint8)
    x[:, 2] //= 4  # channels with different statistics
    mean, std = per_channel_stats(x, chunk=64)
    xd = x.to(torch.float64)
    assert torch.allclose(mean.double(), xd.mean(dim=(0, 2, 3)), atol=1e-4)
    assert torch.allclose(std.double(), xd.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, correction=0), atol=1e-4)


def _arrays(n_per_class: int = 20, classes: int = 4) -> SplitArrays:
    g = torch.Generator().manual_seed(3)
    n = n_per_class * classes
    return SplitArrays(
        train_x=torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8),
        train_y=torch.arange(n) % classes,
        test_x=torch.randint(0, 256, (10, 3, 8, 8), generator=g, dtype=torch.uint8),
        test_y=torch.arange(10) % classes,
        classes=[f"c{i}" for i in range(classes)],
    )


def test_make_bundle_pixel_mean_over_training_part_only() -> None:
    arrays = _arrays()
    bundle = make_bundle(arrays, val_size=8, seed=0, normalize="pixel")
    train_idx, val_idx = split_train_val(arrays.train_y, 8, seed=0)
    assert torch.equal(bundle.val_x, arrays.train_x[val_idx]) and torch.equal(bundle.val_y, arrays.train_y[val_idx])
    assert torch.equal(bundle.train_x, arrays.train_x[train_idx])
    assert bundle.train_x.shape[0] == 72 and bundle.std is None and bundle.num_classes == 4
    assert torch.equal(bundle.mean, per_pixel_mean(arrays.train_x[train_idx]))
    assert not torch.equal(bundle.mean, per_pixel_mean(arrays.train_x))  # the val images are excluded
    out = normalize(bundle.train_x, bundle.mean, bundle.std)
    assert out.dtype == torch.float32
    assert torch.allclose(out.double().mean(dim=0), torch.zeros(3, 8, 8, dtype=torch.float64), atol=1e-4)


def test_make_bundle_channel_stats_and_no_validation() -> None:
    arrays = _arrays()
    bundle = make_bundle(arrays, val_size=0, seed=0, normalize="channel")
    assert bundle.val_x.shape == (0, 3, 8, 8) and bundle.val_y.shape == (0,)
    assert torch.equal(bundle.train_x, arrays.train_x)
    assert bundle.mean.shape == (3, 1, 1) and bundle.std is not None and bundle.std.shape == (3, 1, 1)
    out = normalize(bundle.train_x, bundle.mean, bundle.std).double()
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(out.std(dim=(0, 2, 3), correction=0), torch.ones(3, dtype=torch.float64), atol=1e-4)
    with pytest.raises(DataError, match="normalize must be"):
        make_bundle(arrays, 0, 0, normalize="zca")  # type: ignore[arg-type]


def test_split_arrays_validates_its_contents() -> None:
    arrays = _arrays()
    with pytest.raises(DataError, match="labels must lie in"):
        SplitArrays(arrays.train_x, arrays.train_y + 4, arrays.test_x, arrays.test_y, arrays.classes)
    with pytest.raises(DataError, match="must be uint8"):
        SplitArrays(arrays.train_x.float(), arrays.train_y, arrays.test_x, arrays.test_y, arrays.classes)
