"""The device-resident CIFAR path (data on the training device, augmented there) against the host path: the same
batches bit for bit, and the same training run."""

from __future__ import annotations

import pytest
import torch

from resnetlab.data import BatchLoader
from resnetlab.data.resident import ResidentBatchLoader
from resnetlab.train.trainer import Trainer
from train_utils import tiny_bundle, tiny_config


def _data(n: int = 70) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 256, (n, 3, 12, 10), generator=g, dtype=torch.uint8), torch.randint(0, 10, (n,),
                                                                                                  generator=g)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(("pad", "flip"), [(4, True), (4, False), (0, True), (0, False), (2, True)])
@pytest.mark.parametrize(("rank", "world"), [(0, 1), (0, 2), (1, 2)])
def test_resident_batches_equal_the_host_batches_bit_for_bit(train: bool, pad: int, flip: bool, rank: int,
                                                             world: int) -> None:
    x, y = _data()
    args = (x, y, 16, 7, train, pad, True, rank, world, flip)
    host, resident = BatchLoader(*args), ResidentBatchLoader(*args, device="cpu")
    assert len(host) == len(resident) == (4 if train else 5)
    for epoch in (0, 1):
        for start in (0, 2):
            pairs = list(zip(host.batches(epoch, start), resident.batches(epoch, start), strict=True))
            assert len(pairs) == len(host) - start
            for (hx, hy), (rx, ry) in pairs:
                assert rx.dtype == torch.uint8 and rx.shape == hx.shape
                assert torch.equal(hx, rx) and torch.equal(hy, ry)
    if train and (pad or flip):  # the augmentation really ran: the batches are not the raw images
        (hx, _), = list(host.batches(0, 3))
        assert not torch.equal(hx, x[host.order(0)[48:64][rank * 16 // world:(rank + 1) * 16 // world]])


def test_training_with_data_on_the_device_is_the_same_run() -> None:
    results = []
    for mode in ("off", "on"):
        trainer = Trainer(tiny_config(data_on_device=mode), tiny_bundle())
        assert trainer.resident == (mode == "on")
        assert type(trainer.loader) is (ResidentBatchLoader if mode == "on" else BatchLoader)
        for epoch in range(3):
            trainer.train_one_epoch(epoch, stop=12)
        results.append((trainer.model.state_dict(), trainer.evaluate("test").top1_error,
                        trainer.evaluate("val").loss))
    (a, err_a, loss_a), (b, err_b, loss_b) = results
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (err_a, loss_a) == (err_b, loss_b)


def test_auto_keeps_cpu_runs_on_the_host_path() -> None:
    trainer = Trainer(tiny_config(), tiny_bundle())
    assert trainer.cfg.hardware.data_on_device == "auto" and not trainer.resident
    assert type(trainer.loader) is BatchLoader
