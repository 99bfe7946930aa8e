"""The config in sections: section keys and their flat aliases, frozen and validated when built, saved configs of
both shapes, the one resume decision, and every machine-dependent "auto" resolved once per run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from resnetlab.train import ConfigError, TrainConfig, fit, resolve_config
from resnetlab.train import config as config_mod
from resnetlab.train import device as device_mod
from resnetlab.train.config import FLAT_KEYS, SECTIONS
from resnetlab.train.resume import RESUMABLE_CHANGES, resumed_config
from train_utils import tiny_bundle, tiny_config

RUNS = Path(__file__).resolve().parents[1] / "runs"


def test_every_key_is_set_alike_by_its_section_name_and_its_flat_name() -> None:
    base = TrainConfig()
    flat = base.to_dict()
    assert len(FLAT_KEYS) == len(flat) == 55  # every key of the flat config has one place in one section
    for name, (section, key) in FLAT_KEYS.items():
        if name in ("recipe", "scale"):
            continue
        value = flat[name]
        changed = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v / 2}.get(type(value))
        if changed is None:
            continue
        new = changed(value)
        by_section = base.updated({f"{section}.{key}": new})
        by_flat = base.updated({name: new})
        assert by_section == by_flat and getattr(getattr(by_section, section), key) == new, name
        assert by_section.to_dict()[name] == new


def test_section_strings_from_the_command_line_are_typed() -> None:
    cfg = resolve_config("cifar10_paper", ["optim.lr=0.05", "schedule.milestones=100,200", "model.shortcut=B",
                                           "model.name=resnet56", "hardware.channels_last=off", "eval.interval=50",
                                           "data.cache_dir=none"])
    assert (cfg.optim.lr, cfg.schedule.milestones, cfg.eval.interval) == (0.05, (100, 200), 50)
    assert cfg.model == dataclasses.replace(cfg.model, name="resnet56", options={"shortcut": "B"})
    assert cfg.hardware.channels_last is False and cfg.data.cache_dir is None
    assert resolve_config("cifar10_paper", ['model.options={"shortcut": "C"}']).model.options == {"shortcut": "C"}
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.momentun' \(did you mean optim.momentum"):
        resolve_config("cifar10_paper", ["optim.momentun=0.8"])
    with pytest.raises(ConfigError, match=r"unknown config key 'run\.scale'"):
        resolve_config("cifar10_paper", ["run.scale=2"])  # provenance: set by --scale only
    with pytest.raises(ConfigError, match="batch_size must be positive"):
        resolve_config("cifar10_paper", ["optim.batch_size=0"])


def test_a_config_is_resolved_and_validated_once_with_every_layer_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe, --scale, a budget's values and the user's --set are merged first, then checked once: a budget's
    value that the user's override makes valid is accepted."""
    checked: list[int] = []
    real = config_mod.validate
    monkeypatch.setattr(config_mod, "validate", lambda cfg: (checked.append(cfg.schedule.max_iters), real(cfg)))
    cfg = resolve_config("cifar10_paper", ["schedule.max_iters=100"], scale=0.1,
                         values={"max_iters": 10, "warmup_iters": 50})  # alone, warm-up would outlast the run
    assert (cfg.schedule.max_iters, cfg.schedule.warmup_iters, cfg.schedule.milestones) == (100, 50, (3200, 4800))
    assert checked == [100]


def test_a_config_is_frozen_and_cannot_exist_invalid() -> None:
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.lr = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim = cfg.optim  # type: ignore[misc]
    with pytest.raises(ConfigError, match="milestones must increase"):
        TrainConfig(schedule=dataclasses.replace(cfg.schedule, milestones=(20, 10)))
    assert cfg.updated({"optim.lr": 0.2}).optim.lr == 0.2 and cfg.optim.lr == 0.1  # a new config; this one stays


def test_saved_configs_load_flat_and_in_sections() -> None:
    cfg = resolve_config("cifar10_paper", ["model.shortcut=B", "optim.lr=0.05"], scale=0.1)
    flat = json.loads(cfg.to_json())
    assert set(flat) == set(FLAT_KEYS) and flat["model_kwargs"] == {"shortcut": "B"} and flat["lr"] == 0.05
    assert TrainConfig.from_dict(flat) == cfg
    nested = cfg.sections()
    assert set(nested) == set(SECTIONS) and nested["optim"]["lr"] == 0.05 and nested["model"]["options"]
    assert TrainConfig.from_dict(json.loads(json.dumps(nested))) == cfg
    with pytest.raises(ConfigError, match="unknown config key"):
        TrainConfig.from_dict({**flat, "learning_rate": 0.1})


def test_every_committed_runs_config_loads_to_the_same_record() -> None:
    """Saved flat configs still load and give back every value they hold (run keys hash these names); a key added
    since takes its default."""
    configs = sorted(RUNS.glob("*/*/*/config.json"))
    defaults = TrainConfig().to_dict()
    assert configs
    for path in configs:
        saved = json.loads(path.read_text())
        loaded = TrainConfig.from_dict(saved).to_dict()
        assert loaded == {**defaults, **saved}, path


def test_resuming_takes_only_the_keys_that_may_change() -> None:
    saved = tiny_config()
    now = saved.updated({"hardware.threads": 1, "eval.batch_size": 8, "data.source": "/moved"})
    resumed = resumed_config(saved, now, Path("run"))
    assert (resumed.hardware.threads, resumed.eval.batch_size, resumed.data.source) == (1, 8, "/moved")
    assert {"threads", "eval_batch_size", "data"} <= RESUMABLE_CHANGES
    assert resumed_config(saved, None, Path("run")) is saved
    with pytest.raises(ConfigError, match=r"cannot resume run with a different setup: lr: 0\.1 \(run\) vs 0\.2"):
        resumed_config(saved, saved.updated({"optim.lr": 0.2}), Path("run"))


def test_a_run_resolves_its_precision_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """precision="auto" is made concrete once, at the top of the run, not at every step or evaluation."""
    calls: list[str] = []

    def probe(device: object) -> bool:
        calls.append(str(device))
        return False

    monkeypatch.setattr(device_mod, "has_fast_bf16", probe)
    cfg = tiny_config(precision="auto", eval_precision="auto")
    result = fit(cfg, tmp_path / "run", data=tiny_bundle(), progress=False)
    assert result.iterations == cfg.schedule.max_iters == 12
    assert calls == ["cpu", "cpu"]  # the training precision and the evaluation precision, each once
    assert result.summary["precision"] == result.summary["eval_precision"] == "fp32"
    assert (result.summary["device"], result.summary["data_on_device"]) == ("cpu", False)  # what "auto" chose here
    assert (result.summary["warmup"], result.summary["warmup_ended_at"]) == (False, None)  # auto: a shallow net
