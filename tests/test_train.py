"""The training engine: recipe and schedule, exact resume, metrics, checkpoints, evaluation, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from png_utils import assert_confusion_figure, assert_figure
from resnetlab.cli import main
from resnetlab.io import checksum_path
from resnetlab.train import (
    CheckpointError,
    ConfigError,
    LRSchedule,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    fit,
    load_checkpoint,
    read_metrics,
    resolve_config,
    step_lr,
)
from resnetlab.train import device as device_mod
from resnetlab.train import engine as engine_mod
from resnetlab.train.checkpoint import list_checkpoints
from resnetlab.train.schedule import warmup_wanted
from train_utils import free_port, tiny_bundle, tiny_config, write_image_folder


# --- recipe, config, schedule -------------------------------------------------------------------------------------
def test_cifar10_paper_recipe_is_the_papers() -> None:
    cfg = resolve_config("cifar10_paper")
    assert (cfg.optim.batch_size, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (128, 0.1, 0.9, 1e-4)
    assert cfg.schedule.milestones == (32_000, 48_000) and cfg.schedule.max_iters == 64_000
    assert (cfg.data.val_size, cfg.data.normalize, cfg.data.pad, cfg.data.flip) == (5000, "pixel", 4, True)


def test_scale_multiplies_every_iteration_count_and_overrides_are_absolute() -> None:
    cfg = resolve_config("cifar10_paper", ["eval_interval=50"], scale=0.025)
    assert cfg.schedule.milestones == (800, 1200) and cfg.schedule.max_iters == 1600 and cfg.eval.interval == 50
    assert cfg.run.scale == 0.025


def test_overrides_are_typed_and_checked() -> None:
    cfg = resolve_config("cifar10_paper", ["lr=0.05", "milestones=100,200", "channels_last=false",
                                           "model.shortcut=B", "precision=bf16", "cache_dir=none"])
    assert cfg.optim.lr == 0.05 and cfg.schedule.milestones == (100, 200) and cfg.hardware.channels_last is False
    assert cfg.model.options == {"shortcut": "B"} and cfg.hardware.precision == "bf16" and cfg.data.cache_dir is None
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        resolve_config("cifar10_paper", ["learning_rate=0.1"])
    with pytest.raises(ConfigError, match="lr must be a number"):
        resolve_config("cifar10_paper", ["lr=fast"])
    with pytest.raises(ConfigError, match="precision must be one of"):
        resolve_config("cifar10_paper", ["precision=fp8"])
    with pytest.raises(ConfigError, match="unknown recipe"):
        resolve_config("cifar10_papr")


def test_step_schedule_divides_by_10_at_32k_and_48k() -> None:
    lrs = [step_lr(i, 0.1, (32_000, 48_000), 0.1) for i in (0, 31_999, 32_000, 47_999, 48_000, 63_999)]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_warmup_goes_back_to_0_1_once_training_error_is_below_80() -> None:
    s = LRSchedule(0.1, (32_000, 48_000), 0.1, warmup=True, warmup_lr=0.01, until_error=80.0, window=4)
    assert s.lr(0) == 0.01
    for it, err in enumerate([90, 88, 85, 86, 82, 79]):  # window mean 83 -> not yet
        s.observe(it, err)
        assert s.lr(it + 1) == 0.01
    s.observe(6, 70)  # window (86, 82, 79, 70): mean 79.25 < 80
    assert s.warmup_ended_at == 7 and s.lr(7) == 0.1  # back to 0.1, not stuck at 0.01
    assert s.lr(40_000) == pytest.approx(0.01)
    s.observe(9, 99.0)  # never warms up again
    assert s.lr(10) == 0.1
    restored = LRSchedule(0.1, (32_000, 48_000), 0.1, warmup=True)
    restored.load_state_dict(s.state_dict())
    assert restored.lr(10) == 0.1 and restored.warmup_ended_at == 7


def test_warmup_auto_follows_the_paper() -> None:
    assert warmup_wanted(resolve_config("cifar10_paper", ["model=resnet110"]))
    assert warmup_wanted(resolve_config("cifar10_paper", ["model=resnet1202"]))
    assert not warmup_wanted(resolve_config("cifar10_paper", ["model=resnet56"]))
    assert not warmup_wanted(resolve_config("cifar10_paper", ["model=resnet152"]))  # ImageNet net
    assert warmup_wanted(resolve_config("cifar10_paper", ["model=resnet20", "warmup=on"]))


def test_warmup_ends_in_a_real_run(tmp_path: Path) -> None:
    cfg = tiny_config(warmup="on", warmup_window=2, warmup_until_error=70.0, max_iters=16)
    trainer = Trainer(cfg, tiny_bundle())
    lrs = []
    for images, labels in trainer.loader.batches(0):
        lrs.append(trainer.schedule.lr(trainer.iteration))
        trainer.train_step(images, labels)
    for images, labels in trainer.loader.batches(1):
        lrs.append(trainer.schedule.lr(trainer.iteration))
        trainer.train_step(images, labels)
    ended = trainer.schedule.warmup_ended_at
    assert ended is not None and 2 <= ended < len(lrs)
    assert lrs[:ended] == [0.01] * ended and lrs[ended] == 0.1


# --- a run --------------------------------------------------------------------------------------------------------
def _params(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def _rows_without_timing(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in read_metrics(run / "metrics.jsonl")]


@pytest.mark.parametrize("cpu_bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_precision_auto_is_bf16_only_where_the_cpu_has_bf16_units(
        monkeypatch: pytest.MonkeyPatch, cpu_bf16: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: cpu_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert TrainConfig().hardware.precision == "auto"
    assert device_mod.resolve_precision("auto", "cpu") == expected
    assert device_mod.resolve_precision("fp32", "cpu") == "fp32"  # an explicit choice is kept
    trainer = Trainer(tiny_config(precision="auto"), tiny_bundle())
    assert trainer.precision == expected
    seen: list[torch.dtype] = []  # the dtype the first conv really computes in
    trainer.model.conv1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    images, labels = next(iter(trainer.loader.batches(0)))
    trainer.train_step(images, labels)
    assert seen and seen[0] == (torch.bfloat16 if expected == "bf16" else torch.float32)
    assert trainer.model.conv1.weight.dtype == torch.float32  # master weights stay fp32


def test_run_writes_config_metrics_checkpoints_curves(tmp_path: Path) -> None:
    result = fit(tiny_config(), tmp_path / "run", data=tiny_bundle(), progress=False)
    run = tmp_path / "run"
    assert result.iterations == 12
    assert json.loads((run / "config.json").read_text())["model"] == "resnet8"
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["iter"] for r in rows if r["kind"] == "train"] == [2, 4, 6, 8, 10, 12]
    assert [r["iter"] for r in rows if r["kind"] == "eval"] == [4, 8, 12]
    assert all(0 <= r["test_error"] <= 100 and 0 <= r["val_error"] <= 100 for r in rows if r["kind"] == "eval")
    assert [r["lr"] for r in rows if r["kind"] == "train"] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01, 0.001])
    assert [i for i, _ in list_checkpoints(run)] == [8, 12]  # keep_checkpoints=2
    state = load_checkpoint(run / "checkpoint-0000012.pt")
    assert state["config"]["model"] == "resnet8" and state["classes"] == ["a", "b", "c", "d"]
    assert state["iteration"] == 12 and state["mean"].shape == (3, 16, 16)
    assert_figure(run / "curves.png", (6, 4.2), curves=["C0"], absent=("C1",))  # one run: one colour
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == 12 and summary["test_error"] == rows[-1]["test_error"]


def test_resume_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tiny_bundle()
    fit(tiny_config(), tmp_path / "full", data=bundle, progress=False)

    original = engine_mod.Trainer.train_step

    def dies_at_7(self, images, labels):
        if self.iteration == 6:
            raise KeyboardInterrupt  # after the checkpoint at 4, mid-way to the next one
        return original(self, images, labels)

    monkeypatch.setattr(engine_mod.Trainer, "train_step", dies_at_7)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config(), tmp_path / "cut", data=bundle, progress=False)
    assert [i for i, _ in list_checkpoints(tmp_path / "cut")] == [4]
    monkeypatch.setattr(engine_mod.Trainer, "train_step", original)
    fit(None, tmp_path / "cut", resume=True, data=bundle, progress=False)

    full = _params(tmp_path / "full" / "checkpoint-0000012.pt")
    cut = _params(tmp_path / "cut" / "checkpoint-0000012.pt")
    assert full.keys() == cut.keys()
    for k in full:
        assert torch.equal(full[k], cut[k]), k  # bit for bit
    assert _rows_without_timing(tmp_path / "full") == _rows_without_timing(tmp_path / "cut")  # no dup, none lost


def test_grad_accumulation_matches_one_big_step_without_bn_batch_effects(tmp_path: Path) -> None:
    """With the model in a BN-free configuration, 2 micro-batches of 8 give the gradient of one batch of 16."""
    bundle = tiny_bundle()
    a = Trainer(tiny_config(), bundle)
    b = Trainer(tiny_config(grad_accum=2), bundle)
    for t in (a, b):  # BN in eval mode normalises with fixed statistics: the batch split cannot matter
        t.ddp.eval()
    images, labels = next(iter(a.loader.batches(0)))
    a.train_step(images, labels)
    b.train_step(images, labels)
    for (n, p), q in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=n)


def test_new_run_never_overwrites_an_existing_one(tmp_path: Path) -> None:
    fit(tiny_config(max_iters=4), tmp_path / "run", data=tiny_bundle(), progress=False)
    before = (tmp_path / "run" / "checkpoint-0000004.pt").read_bytes()
    with pytest.raises(Exception, match="already holds a run"):
        fit(tiny_config(max_iters=4), tmp_path / "run", data=tiny_bundle(), progress=False)
    assert (tmp_path / "run" / "checkpoint-0000004.pt").read_bytes() == before


def test_incompatible_resume_is_refused(tmp_path: Path) -> None:
    fit(tiny_config(max_iters=4), tmp_path / "run", data=tiny_bundle(), progress=False)
    with pytest.raises(ConfigError, match="different setup: lr"):
        fit(tiny_config(max_iters=4, lr=0.5), tmp_path / "run", resume=True, data=tiny_bundle(), progress=False)
    with pytest.raises(ConfigError, match="model: 'resnet8'"):
        fit(tiny_config(max_iters=4, model="resnet14"), tmp_path / "run", resume=True, data=tiny_bundle(),
            progress=False)


def test_resume_missing_path_never_starts_fresh(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="does not exist"):
        fit(None, tmp_path / "nope", resume=True, progress=False)
    assert not (tmp_path / "nope").exists()
    assert main(["train", "--resume", str(tmp_path / "nope"), "--no-progress"]) == 1


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tiny_bundle()
    original = engine_mod.Trainer.train_step

    def poisoned(self, images, labels):
        if self.iteration == 5:  # NaN pixels reach the loss at iteration 6
            images = images.float() * float("nan")
        return original(self, images, labels)

    monkeypatch.setattr(engine_mod.Trainer, "train_step", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"iteration 6.*checkpoint-0000004\.pt is intact"):
        fit(tiny_config(), tmp_path / "run", data=bundle, progress=False)
    assert [i for i, _ in list_checkpoints(tmp_path / "run")] == [4]
    load_checkpoint(tmp_path / "run" / "checkpoint-0000004.pt")  # verifies


def test_class_count_mismatch_is_caught_before_compute(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="4 classes but the model is set to num_classes=10"):
        fit(tiny_config(model_kwargs={"num_classes": 10}), tmp_path / "run", data=tiny_bundle(), progress=False)
    assert not (tmp_path / "run" / "config.json").exists()


def test_corrupt_checkpoints_are_skipped_on_resume(tmp_path: Path) -> None:
    bundle = tiny_bundle()
    fit(tiny_config(max_iters=8, keep_checkpoints=3), tmp_path / "run", data=bundle, progress=False)
    newest = tmp_path / "run" / "checkpoint-0000008.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte in the tensor data: torch.load would accept it
    newest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(newest)
    messages: list[str] = []
    cfg = tiny_config(max_iters=8, keep_checkpoints=3)
    fit(cfg, tmp_path / "run", resume=True, data=bundle, progress=False, log=messages.append)
    assert any("checkpoint-0000008.pt" in m and "SHA-256" in m for m in messages)
    assert any("resuming" in m and "checkpoint-0000004.pt" in m for m in messages)
    load_checkpoint(newest)  # rewritten by the resumed run


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", os.urandom(4096)])
def test_unreadable_checkpoint_gives_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "checkpoint-0000001.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path.name)):
        load_checkpoint(path, require_checksum=False)


# --- command line -------------------------------------------------------------------------------------------------
def test_cli_train_eval_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_image_folder(tmp_path / "data")
    run = tmp_path / "run"
    args = ["train", "--model", "resnet8", "--data", str(data), "--out", str(run), "--cache-dir", str(tmp_path / "c"),
            "--no-progress", "--set", "batch_size=16", "--set", "max_iters=6", "--set", "eval_interval=3",
            "--set", "log_interval=3", "--set", "val_size=16", "--set", "milestones=4,5"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "test error:" in out and "run:" in out
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0  # finished: nothing to do, same summary
    ckpt = run / "checkpoint-0000006.pt"
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(data), "--cache-dir", str(tmp_path / "c"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    top1 = [line for line in out.splitlines() if line.startswith("top-1 error: ")]
    assert len(top1) == 1 and top1[0].endswith("%")
    assert any(line.startswith("top-5 error: ") for line in out.splitlines())
    report = json.loads((run / "eval" / "checkpoint-0000006-center" / "confusion.json").read_text())
    assert sum(map(sum, report["confusion"])) == 32 and set(report["per_class_accuracy"]) == {"a", "b", "c", "d"}
    assert f"top-1 error: {report['top1_error']:.2f}%" == top1[0]
    assert_confusion_figure(run / "eval" / "checkpoint-0000006-center" / "confusion.png", report["confusion"])


def test_cli_bad_inputs_are_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err
    assert main(["train", "--out", str(tmp_path / "r"), "--set", "lr=abc"]) == 1
    assert "lr must be a number" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--set", "no_such_key=1"]) == 1
    assert "unknown config key 'no_such_key'" in capsys.readouterr().err
    assert main(["train", "--model", "resnet57", "--out", str(tmp_path / "r"), "--data", str(tmp_path)]) == 1
    ckpt = tmp_path / "bad.pt"
    ckpt.write_bytes(b"not a checkpoint")
    assert main(["eval", "--checkpoint", str(ckpt), "--no-progress"]) == 1
    assert "bad.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "--no-such-flag"])
    assert exc.value.code == 2


def test_foreign_pickle_checkpoint_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "resnetlab.checkpoint", "x": _Evil(str(marker))}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt"):
        load_checkpoint(path, require_checksum=False)
    assert not marker.exists()
    assert not checksum_path(path).exists()


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# --- distributed --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_two_processes_match_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    """torchrun, 2 CPU processes x 8 images (gloo) == 1 process with 2 micro-batches of 8: the same BN groups."""
    data = write_image_folder(tmp_path / "data")
    common = ["--model", "resnet8", "--data", str(data), "--cache-dir", str(tmp_path / "c"), "--no-progress",
              "--set", "batch_size=16", "--set", "max_iters=6", "--set", "eval_interval=3", "--set", "val_size=16",
              "--set", "milestones=4,5", "--set", "channels_last=false",
              "--set", "precision=fp32"]  # compared to 1e-4 below; "auto" (bf16 here) has its own test
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
                    "-m", "resnetlab.cli", "train", *common, "--out", str(tmp_path / "ddp")],
                   check=True, env=env, capture_output=True, timeout=300)
    assert main(["train", *common, "--out", str(tmp_path / "one"), "--set", "grad_accum=2"]) == 0
    a = load_checkpoint(tmp_path / "ddp" / "checkpoint-0000006.pt")
    b = load_checkpoint(tmp_path / "one" / "checkpoint-0000006.pt")
    assert a["world_size"] == 2 and b["world_size"] == 1
    for k, v in a["model"].items():  # BN running statistics too: both keep those of the batch's first 8 images
        torch.testing.assert_close(v, b["model"][k], rtol=1e-4, atol=1e-5, msg=k)
    evals_a = [r for r in read_metrics(tmp_path / "ddp" / "metrics.jsonl") if r["kind"] == "eval"]
    evals_b = [r for r in read_metrics(tmp_path / "one" / "metrics.jsonl") if r["kind"] == "eval"]
    assert [(r["val_error"], r["test_error"]) for r in evals_a] == [(r["val_error"], r["test_error"]) for r in evals_b]
    rows_a = [r for r in read_metrics(tmp_path / "ddp" / "metrics.jsonl") if r["kind"] == "train"]
    rows_b = [r for r in read_metrics(tmp_path / "one" / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["train_loss"] for r in rows_a] == pytest.approx([r["train_loss"] for r in rows_b], rel=1e-4)
