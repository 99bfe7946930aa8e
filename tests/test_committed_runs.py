"""The committed runs (runs/<data>/<budget>/: the medium budget and the paper-length runs, on the JPEG copy and on the
official pixels): every CIFAR experiment renders from them on their own data with no training, each committed run is
found under the key computed now (a refactor that changed run keys fails here, the fast test first), and its weights
file matches its summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_utils import REPO, real_data, tracked
from resnetlab.data.known import KNOWN_DATA, data_name, known_data
from resnetlab.experiments import reproduce
from resnetlab.experiments.runner import BUDGETS, Context, RunSpec, config_hash, get_budget
from resnetlab.train import TrainConfig
from resnetlab.train.checkpoint import latest_checkpoint
from resnetlab.train.device import resolve_precision
from resnetlab.train.resume import has_run
from resnetlab.weights.files import load_weights

RUNS = REPO / "runs"
CIFAR_EXPERIMENTS = ("degradation", "table6", "responses", "shortcuts")


def committed(budget: str | None = None) -> list[Path]:
    """The finished runs git tracks, of one budget (runs/<budget>/) or of all."""
    return sorted(p.parent for p in tracked(RUNS) if p.name == "summary.json"
                  and (budget is None or p.parent.parent.name == budget))


def unfinished() -> list[Path]:
    """Committed runs without a summary: long runs committed with their newest checkpoint, to continue in the next
    session."""
    files = set(tracked(RUNS))
    return sorted(p.parent for p in files if p.name == "config.json" and p.parent / "summary.json" not in files)


def _overrides(run: Path) -> list[str]:
    """What finds a committed run besides its budget: the one JPEG paper-length run held out 5k images, which its
    budget no longer does (``--set val_size=5000``)."""
    config = json.loads((run / "config.json").read_text())
    budget_val = BUDGETS[run.parent.name].overrides.get("data.val_size", TrainConfig().data.val_size)
    return [] if config["val_size"] == budget_val else [f"val_size={config['val_size']}"]


def _digest(run: Path) -> str:
    """The content digest of the data a committed run trained on: its weights record it; an unfinished run is
    taken at its data folder's word (runs/<data>/), which the key then checks."""
    if (run / "model.safetensors").is_file():
        return load_weights(run / "model.safetensors").meta["data"]
    return next(k.digest for k in KNOWN_DATA if k.name == run.parent.parent.name)


def _precision(run: Path) -> str:
    """What a committed run trains in, as it recorded it (its summary, else its newest checkpoint): precision="auto"
    hashes as what it resolves to on the machine at hand, which need not be the one the run trained on."""
    if (run / "summary.json").is_file():
        return json.loads((run / "summary.json").read_text())["precision"]
    found = latest_checkpoint(run, log=pytest.fail)
    assert found is not None, run
    return found[1]["precision"]


def test_every_committed_run_is_under_the_key_of_its_config_and_data() -> None:
    """Fast: the key recomputed from config.json and the data's digest, without the data. A change that moves any
    key (the config's hashing, the data's digest) fails here at once."""
    runs = committed() + unfinished()
    assert runs
    for run in runs:
        digest = _digest(run)
        cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
        # "auto" (as it resolved where the run trained), or pinned to what the run trained in (--set precision=fp32)
        assert cfg.hardware.precision in ("auto", _precision(run)), run
        cfg = cfg.updated({"hardware.precision": _precision(run)})
        assert run.name.rsplit("-", 1)[1] == config_hash(cfg, digest), run
        assert run.parent.parent.name == data_name(digest) and known_data(digest) is not None, run
        assert run.parent.parent.parent == RUNS and run.parent.name in BUDGETS, run


def test_committed_runs_are_complete_records() -> None:
    runs = committed()
    assert committed("medium"), "no committed medium runs"
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        config = json.loads((run / "config.json").read_text())
        assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "summary.json",
                                                 "model.safetensors", "model.safetensors.sha256"}, run
        wf = load_weights(run / "model.safetensors", summary["weights_sha256"])
        assert wf.meta["iterations"] == summary["iterations"] == config["max_iters"], run
        if run.parent.name == "medium":
            assert summary["iterations"] == 6_400, run
        assert summary["eval_precision"] == "fp32"
    total = sum(f.stat().st_size for f in tracked(RUNS))
    assert total < 60 * 2**20  # the budget for everything the campaign and the released weights add


@pytest.mark.slow
def test_unfinished_committed_runs_are_found_under_their_key_and_continue_from_one_checkpoint(tmp_path: Path) -> None:
    runs = unfinished()
    if not runs:
        pytest.skip("every committed run is finished")
    for run in runs:
        def ctx(*pinned: str, run: Path = run) -> Context:
            return Context("degradation", get_budget(run.parent.name), str(real_data(run.parent.parent.name)),
                           tmp_path, RUNS, overrides=[*_overrides(run), *pinned], progress=False)

        config = json.loads((run / "config.json").read_text())
        spec = RunSpec(config["model"], config["seed"], tuple(config["model_kwargs"].items()))
        precision = _precision(run)
        assert ctx(f"precision={precision}").run_dir(spec) == run  # found under its key wherever it is asked for
        # `resnetlab reproduce ... --budget <its budget>` resumes it where "auto" resolves to its precision. Elsewhere
        # the run in the precision "auto" picks goes on if there is one (the two are kept apart under their keys);
        # else an fp32 run resumes (exactly, anywhere) and a bf16 one is left out with one line that names it
        auto = resolve_precision("auto")
        twin = ctx(f"precision={'fp32' if precision == 'bf16' else 'bf16'}").run_dir(spec)
        if (twin / "summary.json").is_file():  # the same net finished in the other precision: that run is found
            assert ctx().run_dir(spec) == twin != run
        elif auto == precision:
            assert ctx().run_dir(spec) == run
        elif has_run(there := ctx(f"precision={auto}").run_dir(spec)):
            assert ctx().run_dir(spec) == there != run
        elif precision == "fp32":
            assert ctx().run_dir(spec) == run
        else:
            assert str(run.relative_to(REPO)) in (ctx().stranded(spec) or ""), run
        found = latest_checkpoint(run, log=pytest.fail)  # the checkpoint loads and verifies
        committed_ckpts = [p for p in tracked(run) if p.name.startswith("checkpoint-") and p.suffix == ".pt"]
        assert found is not None and committed_ckpts == [found[0]], run  # one checkpoint committed: the newest
        logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        at = found[1]["iteration"]
        assert 0 < at < config["max_iters"] and max(r["iter"] for r in logged) >= at


@pytest.mark.slow
def test_every_experiment_renders_from_the_committed_runs_without_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_training(*args, **kwargs):
        raise AssertionError("rendering from the committed runs must not train")

    monkeypatch.setattr("resnetlab.experiments.runner.fit", no_training)
    for data in sorted({run.parent.parent.name for run in committed()}):
        path = str(real_data(data))
        medium = [run for run in committed("medium") if run.parent.parent.name == data]
        used: set[str] = set()
        for name in CIFAR_EXPERIMENTS if medium else ():
            out = reproduce(name, "medium", path, tmp_path / data / name, RUNS, progress=False, train=False,
                            argv=["reproduce", name, "--budget", "medium", "--no-train"])
            payload = json.loads((out / "results.json").read_text())
            for r in payload["runs"]:
                assert set(r) >= {"model", "seed", "iterations", "train_error", "test_error"}
                assert r["iterations"] == 6_400 and 0 < r["test_error"] < 100
                used.add(Path(r["run_dir"]).name)
            md = (out / "results.md").read_text()
            assert "budget: **medium**" in md and "measured in fp32" in md
            title = "CIFAR-10 JPEG copy" if data == "cifar10-jpeg" else "CIFAR-10 (official"
            assert f"- data: **{title}" in md  # every result says which data its numbers come from
            if payload["missing"]:
                assert "Not trained yet" in md
        # every committed run is found under the key computed now: none is stale or orphaned
        assert {p.name for p in medium} <= used
        paper = [run for run in committed("paper") if run.parent.parent.name == data]
        for overrides in sorted({tuple(_overrides(run)) for run in paper}):  # the finished paper-length runs render
            out = reproduce("degradation", "paper", path, tmp_path / data / "paper", RUNS, progress=False,
                            train=False, overrides=list(overrides),
                            argv=["reproduce", "degradation", "--budget", "paper", "--no-train"])
            payload = json.loads((out / "results.json").read_text())
            assert {Path(r["run_dir"]).name for r in payload["runs"]} == {
                p.name for p in paper if tuple(_overrides(p)) == overrides}
            assert all(r["iterations"] == 64_000 for r in payload["runs"])
