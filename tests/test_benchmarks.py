"""The speed benchmarks time the library's own training step, not a copy of it that could drift."""

from __future__ import annotations

import sys

import pytest

from data_utils import REPO
from resnetlab.train.trainer import Trainer

sys.path.insert(0, str(REPO / "benchmarks"))
import speed_common


def test_the_benchmarked_step_is_trainer_train_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = Trainer.train_step

    def counted(self, images, labels):
        calls.append(images.shape[0])
        return real(self, images, labels)

    monkeypatch.setattr(Trainer, "train_step", counted)
    step = speed_common.train_step_fn("resnet8", "fp32", True, batch=16)
    step()
    step()
    assert calls == [16, 16]
    trainer = speed_common.library_trainer("resnet20", "bf16", checkpointing=True)
    assert trainer.cfg.hardware.activation_checkpointing and trainer.cfg.hardware.precision == "bf16"
    assert trainer.data.train_x.dtype.is_floating_point is False and trainer.data.train_x.shape[1:] == (3, 32, 32)
