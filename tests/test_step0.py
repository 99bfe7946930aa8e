"""What a run's key and its recorded numbers mean: the data's content (not its path) keys a run, every recorded
error names its evaluation precision, BN running statistics update once per step in one process and under DDP
alike, evaluation is cheap by construction, and img/s counts training time only."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from resnetlab.data import normalize
from resnetlab.experiments import reproduce
from resnetlab.experiments.runner import Context, RunSpec, config_hash, get_budget
from resnetlab.train import TrainConfig, Trainer, engine, fit, read_metrics, resolve_config
from resnetlab.train.config import MIN_EVAL_INTERVAL, ConfigError, evaluation_iterations
from train_utils import synthetic_arrays, tiny_bundle, tiny_config, write_image_folder


# --- the run key ----------------------------------------------------------------------------------------------
def _ctx(data: Path, tmp: Path) -> Context:
    return Context("degradation", get_budget("smoke"), str(data), tmp / "out", tmp / "runs", str(tmp / "cache"),
                   ["val_size=16"], progress=False)


def test_run_key_names_the_data_content_not_its_path(tmp_path: Path) -> None:
    a = write_image_folder(tmp_path / "here" / "data", synthetic_arrays(size=32))
    b = tmp_path / "elsewhere" / "copy"
    shutil.copytree(a, b)
    spec = RunSpec("resnet20")
    key_a = _ctx(a, tmp_path).run_dir(spec).name
    assert _ctx(b, tmp_path).run_dir(spec).name == key_a  # a clone with the data in another folder finds the runs
    arrays = synthetic_arrays(size=32)
    arrays.train_x[0, 0, 0, 0] ^= 1  # one pixel of one image
    changed = write_image_folder(tmp_path / "changed", arrays)
    assert _ctx(changed, tmp_path).run_dir(spec).name != key_a


def test_run_keys_are_pinned() -> None:
    """Refactors must not change the keys of committed runs: these are the hashes of a medium-style config."""
    ctx = Context("degradation", get_budget("medium"), "cifar10", Path("out"), Path("runs"))
    cfg = ctx.config(RunSpec("resnet56"))
    # what "auto" resolves to on the machine that trained the committed runs
    cfg = cfg.updated({"hardware.precision": "bf16"})
    assert config_hash(cfg, "0" * 64) == "07a1689f"
    assert config_hash(cfg, "1" * 64) != "07a1689f"
    # where and how fast it computes is not part of the key
    moved = cfg.updated({"data.source": "/elsewhere", "data.cache_dir": "/tmp/c", "hardware.threads": 1,
                         "eval.batch_size": 10})
    assert config_hash(moved, "0" * 64) == "07a1689f"
    evaluated_in_bf16 = cfg.updated({"eval.precision": "bf16"})
    assert config_hash(evaluated_in_bf16, "0" * 64) != "07a1689f"


# --- evaluation precision -------------------------------------------------------------------------------------
def test_every_recorded_error_names_its_precision_and_a_resume_cannot_change_it(tmp_path: Path) -> None:
    cfg = tiny_config(max_iters=8, eval_interval=4)
    data = tiny_bundle()
    result = fit(cfg, tmp_path / "run", data=data, progress=False)
    evals = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["iter"] for r in evals] == [4, 8] and {r["eval_precision"] for r in evals} == {"fp32"}
    assert result.summary["eval_precision"] == "fp32"
    other = cfg.updated({"eval.precision": "bf16", "schedule.max_iters": 12})
    with pytest.raises(ConfigError, match="eval_precision"):
        fit(other, tmp_path / "run", resume=True, data=data, progress=False)


def test_budgets_evaluate_in_fp32() -> None:
    for name in ("smoke", "quick", "medium"):
        assert get_budget(name).overrides.get("eval.precision", "fp32") == "fp32", name


# --- BN statistics --------------------------------------------------------------------------------------------
def test_bn_batch_normalises_each_group_and_updates_running_statistics_once_per_step() -> None:
    """bn_batch=8 on a batch of 16: the gradient is that of two BN groups of 8, the running statistics move once,
    from the first group (what DDP's rank 0 keeps with 2 processes x 8)."""
    data = tiny_bundle()
    t = Trainer(tiny_config(bn_batch=8, channels_last=False), data)
    assert t.micro_batches == 2
    ref = copy.deepcopy(t.model)
    images, labels = next(iter(t.loader.batches(0, 0)))
    t.train_step(images, labels)

    x = normalize(images, data.mean, data.std)
    ref.train()
    loss = 0.5 * F.cross_entropy(ref(x[:8]), labels[:8])
    stats_after_first = {k: v.clone() for k, v in ref.state_dict().items() if "running" in k or "num_batches" in k}
    loss = loss + 0.5 * F.cross_entropy(ref(x[8:]), labels[8:])
    loss.backward()
    cfg = t.cfg
    trained = t.model.state_dict()
    for name, p in ref.named_parameters():
        expected = p.detach() - cfg.optim.lr * (p.grad + cfg.optim.weight_decay * p.detach())  # SGD's first step
        torch.testing.assert_close(trained[name], expected, rtol=1e-5, atol=1e-6, msg=name)
    for k, v in stats_after_first.items():
        torch.testing.assert_close(trained[k], v, msg=k)
    assert int(trained["bn1.num_batches_tracked"]) == 1


def test_one_process_with_bn_groups_evaluates_like_the_same_run_with_grad_accum(tmp_path: Path) -> None:
    """Both paths split the batch into 2 micro-batches and keep the first one's statistics: identical evaluations."""
    data = tiny_bundle()
    a = fit(tiny_config(bn_batch=8), tmp_path / "a", data=data, progress=False)
    b = fit(tiny_config(grad_accum=2), tmp_path / "b", data=data, progress=False)
    assert (a.val_error, a.test_error) == (b.val_error, b.test_error)


# --- evaluation cadence and cost ------------------------------------------------------------------------------
@pytest.mark.parametrize(("scale", "expected"), [
    (1.0, list(range(1000, 64_001, 1000))),
    (0.1, [*range(MIN_EVAL_INTERVAL, 6_001, MIN_EVAL_INTERVAL), 6_400]),
    (0.01, [640]),
    (0.001, [64]),
])
def test_evaluation_cadence_of_the_paper_schedule_at_each_scale(scale: float, expected: list[int]) -> None:
    cfg = resolve_config("cifar10_paper", scale=scale)
    assert evaluation_iterations(cfg) == expected


def test_eval_rows_follow_the_cadence_and_the_summary_states_the_cost(tmp_path: Path) -> None:
    cfg = tiny_config(max_iters=10, eval_interval=4)
    result = fit(cfg, tmp_path / "run", data=tiny_bundle(), progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["iter"] for r in rows if r["kind"] == "eval"] == evaluation_iterations(cfg) == [4, 8, 10]
    seconds = result.summary["seconds"]
    assert set(seconds) == {"train", "eval", "checkpoint"} and all(v > 0 for v in seconds.values())
    assert result.summary["eval_fraction"] == pytest.approx(
        (seconds["eval"] + seconds["checkpoint"]) / sum(seconds.values()), abs=0.01)


def test_img_per_s_counts_training_time_only_when_eval_interval_is_below_log_interval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake clock: 1 s per step, 100 s per evaluation. Every row must read batch/1 s, whatever the evaluations."""
    now = [0.0]
    monkeypatch.setattr(engine, "_clock", lambda: now[0])
    step, evaluate = engine.Trainer.train_step, engine.Trainer.evaluate

    def timed_step(self, images, labels):
        now[0] += 1.0
        return step(self, images, labels)

    def timed_eval(self, split, precision=None):
        now[0] += 100.0
        return evaluate(self, split, precision)

    monkeypatch.setattr(engine.Trainer, "train_step", timed_step)
    monkeypatch.setattr(engine.Trainer, "evaluate", timed_eval)
    cfg = tiny_config(max_iters=12, eval_interval=3, log_interval=6)
    result = fit(cfg, tmp_path / "run", data=tiny_bundle(), progress=False)
    rates = [r["img_per_s"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]
    assert rates == [16.0, 16.0]
    # four evaluations of two splits, then the final model's pass over the training images
    assert result.summary["seconds"]["train"] == 12.0 and result.summary["seconds"]["eval"] == 4 * 2 * 100.0 + 100.0


def test_the_summary_holds_the_final_models_error_on_every_training_image(tmp_path: Path) -> None:
    """Beside the running train_error (augmented batches of the last log window), the final weights scored on every
    image the run trained on, un-augmented, once: what margins between nets use."""
    from resnetlab.experiments.runner import RunRecord, RunSpec, run_model
    from resnetlab.train.evaluate import evaluate

    data = tiny_bundle()
    result = fit(tiny_config(max_iters=6, eval_interval=3, log_interval=3), tmp_path / "run", data=data,
                 progress=False)
    model, wf = run_model(tmp_path / "run")
    expected = evaluate(model, data.train_x, data.train_y, wf.mean, wf.std, precision="fp32").top1_error
    assert data.train_x.shape[0] == 80  # the 96 synthetic images less the 16 held out: the images it trained on
    assert abs(result.summary["final_train_error"] - expected) <= 100 / 80 + 1e-9  # BN folded or not: one image
    record = RunRecord.from_result(RunSpec("resnet8"), result)
    assert record.final_train_error == result.summary["final_train_error"] == record.judged_train_error
    assert record.train_error == result.summary["train_error"]  # the running error is kept as it was
    old = RunRecord.from_result(RunSpec("resnet8"), dataclasses.replace(
        result, summary={**result.summary, "final_train_error": None}))
    assert old.judged_train_error == old.train_error  # a run made before the full pass: the running error


def test_the_final_training_pass_is_fp32_whatever_the_evaluations_precision(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    evaluate = engine.Trainer.evaluate

    def spy(self, split, precision=None):
        seen.append((split, precision or self.eval_precision))
        return evaluate(self, split, precision)

    monkeypatch.setattr(engine.Trainer, "evaluate", spy)
    fit(tiny_config(max_iters=3, eval_interval=3, log_interval=3, eval_precision="bf16"), tmp_path / "run",
        data=tiny_bundle(), progress=False)
    assert seen == [("val", "bf16"), ("test", "bf16"), ("train", "fp32")]


# --- finished runs are reused from their record ---------------------------------------------------------------
def test_a_finished_run_is_reused_from_its_summary_and_weights_without_checkpoints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_image_folder(tmp_path / "data", synthetic_arrays(size=32))
    kwargs = dict(budget="smoke", data=str(data), runs_dir=tmp_path / "runs", cache_dir=str(tmp_path / "c"),
                  overrides=["val_size=16", "eval_batch_size=64"], progress=False, seeds=1, model="resnet8")
    out = reproduce("shortcuts", out=tmp_path / "out", **kwargs)
    first = json.loads((out / "results.json").read_text())["runs"]
    for ckpt in (tmp_path / "runs").rglob("checkpoint-*"):
        ckpt.unlink()  # what a clone has: config, metrics, summary and model.safetensors

    def no_training(*args, **kw):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("resnetlab.experiments.runner.fit", no_training)
    out = reproduce("shortcuts", out=tmp_path / "out2", **kwargs)
    again = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["test_error"], r["train_error"]) for r in again] == [(r["test_error"], r["train_error"]) for r in first]


def test_linear_warmup_multiplies_the_schedule_shape() -> None:
    from resnetlab.train import LRSchedule

    cfg = resolve_config("cifar10_paper", ["lr_schedule=cosine", "warmup_iters=100"], scale=1000 / 64_000)
    s = LRSchedule.from_config(cfg)
    assert s.lr(0) == pytest.approx(0.1 / 100 * (1 + math.cos(0)) / 2)
    assert s.lr(99) == pytest.approx(0.1 * (1 + math.cos(math.pi * 99 / 1000)) / 2)
    assert s.lr(500) == pytest.approx(0.05) and s.lr(999) == pytest.approx(0.1 * (1 - math.cos(math.pi / 1000)) / 2)
    step = LRSchedule.from_config(resolve_config("cifar10_paper", ["warmup_iters=10"], scale=0.01))
    assert [step.lr(i) for i in (0, 9, 10, 319, 320, 479, 480)] == pytest.approx(
        [0.01, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001])
    with pytest.raises(ConfigError, match="warmup_iters"):
        resolve_config("cifar10_paper", ["warmup_iters=640"], scale=0.01)


def test_config_defaults_are_unchanged() -> None:
    """Run keys hash the fields that differ from these defaults: changing one changes every key."""
    d = TrainConfig().to_dict()
    assert (d["eval_interval"], d["log_interval"], d["bn_batch"], d["eval_precision"], d["lr_schedule"]) == \
        (1000, 100, 0, "fp32", "step")


def test_no_train_renders_what_is_finished_and_lists_the_rest(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_image_folder(tmp_path / "data", synthetic_arrays(size=32))
    kwargs = dict(budget="smoke", data=str(data), runs_dir=tmp_path / "runs", cache_dir=str(tmp_path / "c"),
                  overrides=["val_size=16", "eval_batch_size=64"], progress=False)
    reproduce("shortcuts", out=tmp_path / "a", only=["resnet20-shortcutB"], model="resnet20", **kwargs)
    monkeypatch.setattr("resnetlab.experiments.runner.fit", lambda *a, **k: pytest.fail("trained"))
    out = reproduce("shortcuts", out=tmp_path / "b", train=False, model="resnet20", **kwargs)
    payload = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in payload["runs"]] == ["resnet20-shortcutB"]
    assert payload["missing"] == ["resnet20 seed 0", "resnet20-shortcutC seed 0"]
    md = (out / "results.md").read_text()
    assert "Not trained yet, so left out:** resnet20 seed 0, resnet20-shortcutC seed 0" in md
    assert "Run the same command without `--no-train` to train them" in md
    # the first render trained only the net --only named: the others are left out because of --only
    assert "Run the same command without `--only` to train them" in (tmp_path / "a" / "results.md").read_text()
