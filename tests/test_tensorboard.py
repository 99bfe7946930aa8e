"""The TensorBoard sink, read back with TensorBoard's own reader: one value per step, equal to metrics.jsonl, also
after a run that died past its last checkpoint was resumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnetlab.train import engine, fit, read_metrics
from train_utils import tiny_bundle, tiny_config

TAGS = {"train/error": ("train", "train_error"), "train/loss": ("train", "train_loss"), "train/lr": ("train", "lr"),
        "val/error": ("eval", "val_error"), "test/error": ("eval", "test_error")}


def _events(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), purge_orphaned_data=True)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in TAGS}


def _expected(run: Path) -> dict[str, list[tuple[int, float]]]:
    rows = read_metrics(run / "metrics.jsonl")
    return {tag: [(r["iter"], pytest.approx(r[key], rel=1e-6)) for r in rows if r["kind"] == kind]
            for tag, (kind, key) in TAGS.items()}


def test_scalars_equal_the_metrics_rows(tmp_path: Path) -> None:
    fit(tiny_config(max_iters=8, eval_interval=4, tensorboard=True), tmp_path / "run", data=tiny_bundle(),
        progress=False)
    events = _events(tmp_path / "run")
    assert [s for s, _ in events["train/error"]] == [2, 4, 6, 8] and [s for s, _ in events["test/error"]] == [4, 8]
    assert events == _expected(tmp_path / "run")


def test_a_resumed_run_has_no_doubled_or_missing_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny_config(max_iters=12, eval_interval=4, tensorboard=True)
    data = tiny_bundle()
    original = engine.Trainer.train_step
    calls = {"n": 0}

    def dies_at_11(self, images, labels):
        calls["n"] += 1
        if calls["n"] == 11:  # the checkpoint is at 8; rows up to 10 are already in the event file
            raise KeyboardInterrupt
        return original(self, images, labels)

    monkeypatch.setattr(engine.Trainer, "train_step", dies_at_11)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path / "run", data=data, progress=False)
    assert [s for s, _ in _events(tmp_path / "run")["train/error"]] == [2, 4, 6, 8, 10]
    monkeypatch.setattr(engine.Trainer, "train_step", original)
    fit(cfg, tmp_path / "run", resume=True, data=data, progress=False)
    events = _events(tmp_path / "run")
    assert [s for s, _ in events["train/error"]] == [2, 4, 6, 8, 10, 12]
    assert [s for s, _ in events["val/error"]] == [4, 8, 12]
    assert events == _expected(tmp_path / "run")
    fit(cfg, tmp_path / "straight", data=data, progress=False)  # and the values are the uninterrupted run's
    assert events == _events(tmp_path / "straight")
