"""BatchLoader: seeded shuffles, exact resume, distributed slices equal to the single-process batch."""

from __future__ import annotations

import pytest
import torch

from resnetlab.data import BatchLoader, DataError


def _data(n: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(n) % 256  # helps debugging; labels identify images exactly
    return x, torch.arange(n)


def _all(loader: BatchLoader, epoch: int, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader.batches(epoch, start))


def test_train_epoch_covers_a_shuffled_permutation() -> None:
    x, y = _data(1000)
    loader = BatchLoader(x, y, batch_size=128, seed=0, train=True)
    assert len(loader) == 7  # drop_last: 7 * 128 = 896
    batches = _all(loader, 0)
    assert len(batches) == 7 and all(b[0].shape == (128, 3, 8, 8) and b[0].dtype == torch.uint8 for b in batches)
    labels = torch.cat([b[1] for b in batches])
    assert labels.unique().numel() == 896  # no repeats
    assert not torch.equal(labels, torch.arange(896))  # shuffled
    other = torch.cat([b[1] for b in _all(loader, 1)])
    assert not torch.equal(labels, other)  # a new order every epoch
    assert not torch.equal(batches[0][0], x[batches[0][1]])  # augmented


def test_same_seed_same_batches_regardless_of_global_rng() -> None:
    x, y = _data(300)
    a = _all(BatchLoader(x, y, 64, seed=7, train=True), 3)
    torch.manual_seed(1)
    torch.rand(10)
    b = _all(BatchLoader(x, y, 64, seed=7, train=True), 3)
    c = _all(BatchLoader(x, y, 64, seed=8, train=True), 3)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0][1], c[0][1])


def test_resume_reproduces_the_uninterrupted_run() -> None:
    x, y = _data(1000)
    full = BatchLoader(x, y, 100, seed=3, train=True)
    reference = {(e, k): batch for e in range(2) for k, batch in enumerate(_all(full, e))}
    resumed = BatchLoader(x, y, 100, seed=3, train=True)  # a fresh loader, as after a restart
    got = _all(resumed, 1, start=6)
    assert len(got) == 4
    for k, (images, labels) in enumerate(got, start=6):
        assert torch.equal(images, reference[(1, k)][0]) and torch.equal(labels, reference[(1, k)][1])
    assert _all(resumed, 1, start=len(resumed)) == []
    with pytest.raises(ValueError, match="start"):
        resumed.batches(1, start=11)  # raised at the call, not at the first next()


@pytest.mark.parametrize("world_size", [2, 4])
def test_rank_slices_concatenate_to_the_single_process_batch(world_size: int) -> None:
    x, y = _data(1000)
    single = _all(BatchLoader(x, y, 128, seed=5, train=True), 2)
    ranks = [
        _all(BatchLoader(x, y, 128, seed=5, train=True, rank=r, world_size=world_size), 2) for r in range(world_size)
    ]
    for k, (images, labels) in enumerate(single):
        parts = [ranks[r][k] for r in range(world_size)]
        assert all(p[0].shape[0] == 128 // world_size for p in parts)
        assert torch.equal(torch.cat([p[0] for p in parts]), images)
        assert torch.equal(torch.cat([p[1] for p in parts]), labels)


def test_rank_slices_with_partial_last_batch() -> None:
    x, y = _data(250)
    single = _all(BatchLoader(x, y, 100, seed=1, train=True, drop_last=False), 0)
    assert [b[0].shape[0] for b in single] == [100, 100, 50]
    r0 = _all(BatchLoader(x, y, 100, seed=1, train=True, drop_last=False, rank=0, world_size=2), 0)
    r1 = _all(BatchLoader(x, y, 100, seed=1, train=True, drop_last=False, rank=1, world_size=2), 0)
    for s, a, b in zip(single, r0, r1, strict=True):
        assert torch.equal(torch.cat([a[0], b[0]]), s[0]) and torch.equal(torch.cat([a[1], b[1]]), s[1])


def test_eval_batches_cover_the_set_in_order_without_augmentation() -> None:
    x, y = _data(250)
    loader = BatchLoader(x, y, 100, seed=0, train=False)
    assert len(loader) == 3
    batches = _all(loader, 0)
    assert [b[0].shape[0] for b in batches] == [100, 100, 50]
    assert torch.equal(torch.cat([b[0] for b in batches]), x)
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    # Distributed evaluation: every image exactly once over the ranks, same number of steps on each rank.
    ranks = [_all(BatchLoader(x, y, 100, seed=0, train=False, rank=r, world_size=4), 0) for r in range(4)]
    assert all(len(r) == 3 for r in ranks)
    seen = torch.cat([ranks[r][k][1] for k in range(3) for r in range(4)])
    assert torch.equal(seen, y)


def test_invalid_configurations() -> None:
    x, y = _data(100)
    with pytest.raises(DataError, match="not divisible by the world size"):
        BatchLoader(x, y, 100, seed=0, train=True, world_size=3)
    with pytest.raises(DataError, match="no full batch"):
        BatchLoader(x, y, 128, seed=0, train=True)
    with pytest.raises(DataError, match="rank"):
        BatchLoader(x, y, 50, seed=0, train=True, rank=2, world_size=2)
