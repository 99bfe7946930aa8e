"""The paper's experiments at the smoke budget on a small image folder: files, tables, numbers, reuse of runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from png_utils import assert_figure
from resnetlab.cli import main
from resnetlab.data import normalize
from resnetlab.experiments import EXPERIMENTS, reproduce
from resnetlab.experiments.degradation import findings
from resnetlab.experiments.responses import layer_response_stds
from resnetlab.experiments.runner import RunRecord, run_times
from resnetlab.models import create_model
from train_utils import synthetic_arrays, write_image_folder

SMOKE = ["val_size=16", "eval_batch_size=64"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    return write_image_folder(root / "tiny", synthetic_arrays(n_train=96, n_test=32, size=32))


def _table_rows(md: str) -> list[list[str]]:
    """Data rows of the first Markdown table in ``md``."""
    lines = [line for line in md.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def _check_runs(out: Path, models: set[str]) -> list[dict]:
    payload = json.loads((out / "results.json").read_text())
    runs = payload["runs"]
    assert {r["model"] for r in runs} == models
    for r in runs:
        assert r["iterations"] == 6 and isinstance(r["seed"], int)
        assert math.isfinite(r["train_error"]) and math.isfinite(r["test_error"])
        assert 0 <= r["test_error"] <= 100
    md = (out / "results.md").read_text()
    assert "budget: **smoke**" in md and "command: `" in md and "machine:" in md
    return runs


@pytest.mark.slow
def test_every_experiment_at_smoke_budget(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs_dir = tmp_path / "runs"
    common = ["--budget", "smoke", "--data", str(data), "--runs-dir", str(runs_dir), "--cache-dir",
              str(tmp_path / "cache"), "--no-progress"] + [a for s in SMOKE for a in ("--set", s)]

    out = tmp_path / "degradation"
    assert main(["reproduce", "degradation", *common, "--out", str(out)]) == 0
    nets = {f"plain{d}" for d in (20, 32, 44, 56)} | {f"resnet{d}" for d in (20, 32, 44, 56, 110)}
    _check_runs(out, nets)
    # two panels, one colour per net: plain-20/32/44/56 (C0-C3), ResNet-20/32/44/56/110 (C0-C4)
    assert_figure(out / "degradation.png", (11, 7.6), curves=[f"C{i}" for i in range(5)], absent=("C5",))
    # Fig. 6 in the paper's style: plain-20/32/44/56 (C0-C3) left, ResNet-20/32/44/56/110 (C0-C4) right
    assert_figure(out / "fig6.png", (9.2, 3.6), curves=[f"C{i}" for i in range(5)], absent=("C5",))
    # Fig. 1: plain-20 (C0) against plain-56 (C3), training and test error, nothing else
    assert_figure(out / "fig1.png", (9, 3.6), curves=["C0", "C3"], absent=("C1", "C2", "C4"))
    assert "![fig1](fig1.png)" in (out / "results.md").read_text()
    rows = _table_rows((out / "results.md").read_text())
    assert [r[0] for r in rows] == ["plain20", "plain32", "plain44", "plain56", "resnet20", "resnet32", "resnet44",
                                    "resnet56", "resnet110"]
    # The paper's column, and exact parameter counts (4 classes here: 6 fewer outputs of the 64-wide fc than 10)
    assert rows[4][4] == "8.75" and rows[8][1] == f"{1_727_962 - 6 * 65:,}"
    capsys.readouterr()

    out6 = tmp_path / "table6"
    assert main(["reproduce", "table6", *common, "--out", str(out6)]) == 0
    log = capsys.readouterr().out
    assert log.count("finished, reused") == 5  # seed 0 of each depth was trained by the degradation figure
    runs = _check_runs(out6, {f"resnet{d}" for d in (20, 32, 44, 56, 110)})
    assert sorted({r["seed"] for r in runs}) == [0, 1]
    table6 = json.loads((out6 / "results.json").read_text())
    table = table6["table"]
    assert [o["what"].split(" (")[0] for o in table6["orderings"]] == [  # each step up, and first against last
        "resnet32 below resnet20", "resnet44 below resnet32", "resnet56 below resnet44", "resnet110 below resnet56",
        "resnet110 below resnet20"]
    r110 = next(t for t in table if t["model"] == "resnet110")
    errs = [r["test_error"] for r in runs if r["model"] == "resnet110"]
    assert r110["best"] == min(errs) and r110["mean"] == pytest.approx(sum(errs) / 2) and r110["paper"] == 6.43

    outr = tmp_path / "responses"
    assert main(["reproduce", "responses", *common, "--out", str(outr)]) == 0
    # table6 trained ResNet-20's seed 1: the budget's noise is measured now, and seed 1 measures Fig. 7's noise too
    assert capsys.readouterr().out.count("finished, reused") == 6
    resp_json = json.loads((outr / "results.json").read_text())
    resp = resp_json["responses"]
    assert resp_json["noise"] >= 0 and {o["verdict"] for o in resp_json["orderings"]} <= {"shown", "tie", "reversed"}
    assert [o["what"].split(" (")[0] for o in resp_json["orderings"]] == [
        "resnet20 responds less than plain20", "resnet56 responds less than plain56",
        "resnet56 responds less than resnet20", "resnet110 responds less than resnet56"]
    assert set(resp) == {"plain20", "plain56", "resnet20", "resnet56", "resnet110"}
    assert len(resp["resnet20"]["std"]) == 19 and len(resp["resnet110"]["std"]) == 109  # every 3x3 layer
    assert all(math.isfinite(s) and s > 0 for v in resp.values() for s in v["std"])
    # 5 nets, each in the legends. After 6 iterations plain-56's responses dwarf the others (BN's running statistics
    # have barely moved), so the other curves lie flat under ResNet-110's, which is drawn last.
    assert_figure(outr / "responses.png", (7, 7), curves=["C1", "C4"], listed=tuple(f"C{i}" for i in range(5)),
                  absent=("C5",))

    outs = tmp_path / "shortcuts"
    assert main(["reproduce", "shortcuts", *common, "--out", str(outs)]) == 0
    runs = _check_runs(outs, {"resnet20"})
    by_option = {r["options"].get("shortcut", "A"): r["params"] for r in runs}
    assert by_option["A"] == 269_722 - 6 * 65 and by_option["A"] < by_option["B"] < by_option["C"]


def test_fig7_orderings_are_margins_judged_against_two_resnet20_seeds() -> None:
    from resnetlab.experiments.responses import orderings

    stds = {"plain20": 0.9, "resnet20": 0.7, "resnet56": 0.75}  # no plain56, no resnet110
    got = orderings(stds, noise=0.1)
    assert [(o["what"].split(" (")[0], o["margin"], o["verdict"], o["holds"]) for o in got] == [
        ("resnet20 responds less than plain20", 0.2, "shown", True),
        ("resnet56 responds less than resnet20", -0.05, "tie", False)]  # within the noise of 0.1
    assert [o["verdict"] for o in orderings(stds, noise=0.01)] == ["shown", "reversed"]
    assert [o["verdict"] for o in orderings(stds)] == ["leaning", "reversed"]  # noise not measured: never shown


def test_interrupted_experiment_resumes_and_reuses(data: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from resnetlab.train import engine

    kwargs = dict(budget="smoke", data=str(data), runs_dir=tmp_path / "runs", cache_dir=str(tmp_path / "c"),
                  overrides=SMOKE, progress=False, seeds=1, model="resnet8")
    original = engine.Trainer.train_step
    calls = {"n": 0}

    def dies_in_second_run(self, images, labels):
        calls["n"] += 1
        if calls["n"] == 11:  # run A finished (6 steps); run B dies at its 5th, after its checkpoint at 3
            raise KeyboardInterrupt
        return original(self, images, labels)

    monkeypatch.setattr(engine.Trainer, "train_step", dies_in_second_run)
    with pytest.raises(KeyboardInterrupt):
        reproduce("shortcuts", out=tmp_path / "out", **kwargs)
    monkeypatch.setattr(engine.Trainer, "train_step", original)
    counted = {"n": 0}

    def counting(self, images, labels):
        counted["n"] += 1
        return original(self, images, labels)

    monkeypatch.setattr(engine.Trainer, "train_step", counting)
    out = reproduce("shortcuts", out=tmp_path / "out", **kwargs)
    # A is reused, B resumes from its checkpoint at iteration 3, C trains from scratch: 3 + 6 steps, not 18.
    assert counted["n"] == 9
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["iterations"] for r in runs] == [6, 6, 6]
    assert all(r["seconds"] > 0 for r in runs) and "h in all" in (out / "results.md").read_text()


def test_run_times_list_each_run_and_the_total() -> None:
    runs = [RunRecord("resnet20", "resnet20", 0, 10, 1.0, None, 2.0, 1, "", {}, 1800.0),
            RunRecord("resnet20", "resnet20-shortcutB", 1, 10, 1.0, None, 2.0, 1, "", {}, 5400.0),
            RunRecord("plain20", "plain20", 0, 10, 1.0, None, 2.0, 1, "", {})]  # no time recorded: left out
    line = run_times(runs)
    assert line.endswith(": resnet20 s0 30 min, resnet20-shortcutB s1 90 min; 2.0 h in all")
    assert run_times(runs[2:]) == ""


def test_findings_are_margins_judged_against_the_seed_noise() -> None:
    def rec(model: str, train: float, test: float = 50.0) -> RunRecord:
        return RunRecord(model, model, 0, 10, train, None, test, 1, "", {})

    runs = {"plain20": rec("plain20", 40), "plain56": rec("plain56", 70), "resnet20": rec("resnet20", 30, 31),
            "resnet56": rec("resnet56", 28, 29.5)}
    f = findings(runs, noise=(1.0, 1.0))
    assert [(x["finding"], x["margin"], x["verdict"]) for x in f] == [
        (1, 30.0, "shown"), (2, 10.0, "shown"), (2, 42.0, "shown"), (3, 1.5, "shown")]
    assert f[3]["train_margin"] == 2.0
    f = findings(runs, noise=(2.0, 1.0))  # the test margin of 1.5 is within a test noise of 2: a tie
    assert f[3]["verdict"] == "tie" and not f[3]["holds"]
    runs["resnet56"] = rec("resnet56", 32, 29.5)  # lower test error but higher training error: reversed
    assert findings(runs, noise=(1.0, 1.0))[3]["verdict"] == "reversed"
    runs["plain56"] = rec("plain56", 40.5)
    assert findings(runs, noise=(1.0, 1.0))[0]["verdict"] == "tie"
    runs["plain56"] = rec("plain56", 41.004)  # a margin of 1.004 prints as +1.00: judged as printed, within 1.00
    assert findings(runs, noise=(1.0, 1.0))[0]["verdict"] == "tie"
    assert findings(runs, noise=(1.0, 0.99))[0]["verdict"] == "shown"
    # no noise measured at the budget: a margin has a direction, never "shown"
    f = findings(runs, noise=None)
    assert [x["verdict"] for x in f] == ["leaning", "leaning", "leaning", "reversed"]
    assert not any(x["holds"] for x in f) and f[0]["noise"] is None


def test_shortcut_comparisons_follow_table3s_order_against_the_noise() -> None:
    from resnetlab.experiments.shortcuts import comparisons

    got = comparisons({"A": 16.6, "B": 16.3, "C": 17.3}, noise=0.5)
    assert [(c["what"].split(" (")[0], round(c["margin"], 2), c["verdict"]) for c in got] == [
        ("B below A", 0.3, "tie"), ("C below B", -1.0, "reversed")]
    assert [c["verdict"] for c in comparisons({"A": 16.6, "C": 15.0}, noise=None)] == ["leaning"]  # B not run


def test_table6_orderings_judge_the_mean_over_seeds_step_by_step_and_end_to_end() -> None:
    from resnetlab.experiments.table6 import depth_orderings, summarise

    runs = [RunRecord("resnet20", "resnet20", s, 10, 1.0, None, e, 1, "", {}) for s, e in ((0, 17.0), (1, 16.0))]
    runs += [RunRecord("resnet32", "resnet32", 0, 10, 1.0, None, 16.25, 1, "", {}),
             RunRecord("resnet44", "resnet44", 0, 10, 1.0, None, 15.0, 1, "", {})]
    got = depth_orderings(summarise(runs), noise=0.5)
    assert [(o["what"].split(" (")[0], o["margin"], o["verdict"]) for o in got] == [
        ("resnet32 below resnet20", 0.25, "tie"), ("resnet44 below resnet32", 1.25, "shown"),
        ("resnet44 below resnet20", 1.5, "shown")]  # resnet20's mean of two seeds is 16.5
    assert [o["holds"] for o in depth_orderings(summarise(runs[:3]), noise=None)] == [False]
    # by depth whatever the order of the runs, and a depth with no finished run is skipped
    runs[2] = RunRecord("resnet32", "resnet32", 0, 10, 1.0, None, None, 1, "", {})
    got = depth_orderings(summarise(runs[::-1]), noise=0.5)
    assert [o["what"].split(" (")[0] for o in got] == ["resnet44 below resnet20"]


def test_response_stds_equal_a_direct_computation_over_batches() -> None:
    """Fig. 7's statistic pooled over several batches equals the std of the concatenated BN outputs."""
    torch.manual_seed(0)
    model = create_model("resnet8").eval()
    with torch.no_grad():  # non-trivial running statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    mean = images.float().mean(0)
    names, stds = layer_response_stds(model, images, mean, None, batch_size=3)
    assert names == ["bn1", "layer1.0.bn1", "layer1.0.bn2", "layer2.0.bn1", "layer2.0.bn2", "layer3.0.bn1",
                     "layer3.0.bn2"]
    with torch.no_grad():
        x = normalize(images, mean)
        h = F.relu(model.bn1(model.conv1(x)))
        direct = {"bn1": h}
        b = model.layer1[0]
        r1 = b.bn1(b.conv1(h))
        direct["layer1.0.bn1"] = r1
        direct["layer1.0.bn2"] = b.bn2(b.conv2(F.relu(r1)))
    direct["bn1"] = model.bn1(model.conv1(x))  # the response is before the ReLU
    for name in ("bn1", "layer1.0.bn1", "layer1.0.bn2"):
        got = stds[names.index(name)]
        assert got == pytest.approx(direct[name].double().std(unbiased=False).item(), rel=1e-5)


def test_unknown_experiment_and_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "fig99"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "degradation", "--budget", "huge"])
    assert exc.value.code == 2
    assert set(EXPERIMENTS) >= {"degradation", "table6", "responses", "shortcuts"}


@pytest.mark.parametrize("cpu_bf16", [True, False])
def test_run_folders_are_keyed_by_the_precision_computed_in(monkeypatch: pytest.MonkeyPatch, cpu_bf16: bool) -> None:
    """"auto" hashes as what it resolves to, and fp32 (the former default) as nothing: old runs keep their folders."""
    from resnetlab.experiments.runner import config_hash
    from resnetlab.train import TrainConfig

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: cpu_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    base = {"model": "resnet20", "data": "cifar10", "device": "cpu"}
    auto, fp32, bf16 = (config_hash(TrainConfig.from_dict({**base, "precision": p}), "d" * 64)
                        for p in ("auto", "fp32", "bf16"))
    assert fp32 != bf16
    assert auto == (bf16 if cpu_bf16 else fp32)
    # pinned: fp32 is left out of the key, so runs keep their folders whatever the default precision becomes
    assert (fp32, bf16) == ("978e41bb", "7d26cfad")


def _record(model: str, run_dir: Path, k: int) -> RunRecord:
    """A finished run with its own falling curves (the run's index ``k`` shifts them)."""
    run_dir.mkdir(parents=True)
    rows = [{"kind": "train", "iter": i, "train_error": 80.0 - 5 * i - k} for i in range(1, 11)]
    rows += [{"kind": "eval", "iter": i, "test_error": 85.0 - 4 * i - k, "val_error": 86.0 - 4 * i - k}
             for i in (2, 4, 6, 8, 10)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return RunRecord(model, model, 0, 10, rows[9]["train_error"], None, rows[-1]["test_error"], 1, str(run_dir), {})


def test_figures_draw_one_coloured_curve_per_net(tmp_path: Path) -> None:
    from resnetlab.experiments import degradation, imagenet, responses

    nets = ["plain20", "plain56", "resnet20", "resnet56", "resnet110"]
    records = [_record(n, tmp_path / n, k) for k, n in enumerate(nets)]
    # Fig. 6 style: plain-20/56 in the left panel (C0, C1), ResNet-20/56/110 in the right one (C0-C2)
    # (whole runs above, the last 40% zoomed in below)
    assert_figure(degradation.plot(records, tmp_path), (11, 7.6), curves=["C0", "C1", "C2"], absent=("C3",))
    # one family alone (the paper-length ResNet-20): one column, no empty panel beside it
    assert_figure(degradation.plot(records[2:3], tmp_path), (5.5, 7.6), curves=["C0"], absent=("C1",))
    stds = {n: [1.0 + 0.1 * k + 0.01 * i for i in range(19)] for k, n in enumerate(nets)}
    assert_figure(responses.plot(stds, tmp_path), (7, 7), curves=[f"C{i}" for i in range(5)], absent=("C5",))
    fig = imagenet.plot([("Table 3 nets", records)], tmp_path, "t3.png")
    assert_figure(fig, (5.5, 4.2), curves=[f"C{i}" for i in range(5)], absent=("C5",))


def test_shortcut_note_reads_the_papers_numbers_from_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from resnetlab.experiments import shortcuts
    from resnetlab.models import specs

    assert "(Table 3): A 25.03, B 24.52, C 24.19, i.e." in shortcuts.paper_note()
    c = specs.PAPER_VARIANTS[("resnet34", "C")]
    monkeypatch.setitem(specs.PAPER_VARIANTS, ("resnet34", "C"), dataclasses.replace(c, top1_10crop=23.5))
    assert "A 25.03, B 24.52, C 23.50, i.e." in shortcuts.paper_note()  # written down once, in specs


def test_the_noise_is_recorded_beside_the_runs_and_read_back_only_for_the_same_setup(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two ResNet-20 seeds measure a budget's noise; their record (noise.json) keeps it when their runs are not
    kept (the quick budget's runs stay local), and a different setup (another key) does not take it."""
    import shutil

    from resnetlab.experiments.runner import Context, RunSpec, get_budget

    def ctx(*extra: str) -> Context:
        return Context("table6", get_budget("smoke"), str(data), tmp_path / "out", tmp_path / "runs",
                       str(tmp_path / "cache"), [*SMOKE, *extra], progress=False)

    first = ctx()
    assert first.noise is None  # nothing has run
    first.train([RunSpec("resnet20", 0), RunSpec("resnet20", 1)])
    record = json.loads(first.noise_path.read_text())
    assert first.noise_path == tmp_path / "runs" / first.data_name / "smoke" / "noise.json"
    errors = [(s["test_error"], s["final_train_error"]) for s in record["seeds"]]
    expected = (round(abs(errors[0][0] - errors[1][0]), 2), round(abs(errors[0][1] - errors[1][1]), 2))
    assert first.noise == expected == tuple(record["noise"])  # the final models' full-pass training errors
    for seed in (0, 1):
        shutil.rmtree(first.run_dir(RunSpec("resnet20", seed)))
    assert ctx().noise == expected  # the runs are gone: the record stands for them
    assert ctx("lr=0.05").noise is None  # another setup: other keys, not measured
    # on hardware that trains in the other precision the same setup's record still stands (other keys, same runs)
    from resnetlab.train.device import resolve_precision

    here_bf16 = resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: not here_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert ctx().run_dir(RunSpec("resnet20", 0)).name != record["seeds"][0]["run"]
    assert ctx().noise == expected


def test_a_run_made_in_the_other_precision_is_found_and_never_resumed_in_a_precision_it_did_not_start_in(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """precision="auto" is bf16 only where the hardware has it. Moving to other hardware, a finished run is reused
    whatever it trained in; an unfinished fp32 run resumes in fp32; an unfinished bf16 run on hardware without bf16
    is left out with one line that says how to go on, and its checkpoint is untouched."""
    from resnetlab.errors import ResNetLabError
    from resnetlab.experiments.runner import Context, RunSpec, get_budget
    from resnetlab.train import engine

    def machine(bf16: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)

    def ctx(*extra: str) -> Context:
        return Context("table6", get_budget("smoke"), str(data), tmp_path / "out", tmp_path / "runs",
                       str(tmp_path / "cache"), [*SMOKE, "device=cpu", "model=resnet8", *extra], progress=False)

    original = engine.Trainer.train_step
    steps = {"n": 0, "die_at": 0}

    def step(self, images, labels):
        steps["n"] += 1
        if steps["n"] == steps["die_at"]:
            raise KeyboardInterrupt
        return original(self, images, labels)

    monkeypatch.setattr(engine.Trainer, "train_step", step)
    finished, cut_bf16, cut_fp32 = RunSpec("resnet8", 0), RunSpec("resnet8", 1), RunSpec("resnet8", 2)
    machine(bf16=True)
    ctx().train([finished])  # 6 steps, in bf16
    steps["die_at"] = 11  # the second run dies after its checkpoint at iteration 3
    with pytest.raises(KeyboardInterrupt):
        ctx().train([cut_bf16])
    bf16_dir = ctx().run_dir(cut_bf16)
    machine(bf16=False)
    steps.update(n=0, die_at=5)
    with pytest.raises(KeyboardInterrupt):
        ctx().train([cut_fp32])  # fp32 here: dies after its checkpoint at 3

    # On the machine without bf16: the finished bf16 run is reused; the unfinished one is left out, said in one line.
    steps.update(n=0, die_at=0)
    assert [(r.seed, r.iterations) for r in ctx().train([finished])] == [(0, 6)] and steps["n"] == 0
    assert json.loads((ctx().run_dir(finished) / "summary.json").read_text())["precision"] == "bf16"
    with pytest.raises(ResNetLabError, match=r"^resnet8 seed 1: unfinished in bf16 at 3 of 6 iterations .*--set "
                                             r"precision=bf16 .*--set precision=fp32$"):
        ctx().train([cut_bf16])
    assert steps["n"] == 0 and ctx().run_dir(cut_bf16) != bf16_dir  # nothing ran; its folder would be a new one
    assert [p.name for p in sorted(bf16_dir.glob("checkpoint-*.pt"))] == ["checkpoint-0000003.pt"]
    assert ctx("precision=bf16").run_dir(cut_bf16) == bf16_dir  # pinned: found under its own key

    # On a bf16 machine the unfinished fp32 run resumes in fp32 (3 more steps), in its own folder.
    machine(bf16=True)
    fp32_cfg, fp32_dir = ctx().placed(cut_fp32)
    assert fp32_cfg.hardware.precision == "fp32" and (fp32_dir / "checkpoint-0000003.pt").is_file()
    assert [(r.seed, r.iterations) for r in ctx().train([cut_fp32])] == [(2, 6)] and steps["n"] == 3
    assert json.loads((fp32_dir / "summary.json").read_text())["precision"] == "fp32"

    # The net unfinished in bf16 then trained to the end in fp32: on a bf16 machine the finished run is found, not
    # the bf16 one resumed (a finished run is never trained again); pinned, the bf16 run is still there
    machine(bf16=False)
    steps.update(n=0)
    assert [(r.seed, r.iterations) for r in ctx("precision=fp32").train([cut_bf16])] == [(1, 6)] and steps["n"] == 6
    machine(bf16=True)
    steps.update(n=0)
    assert [(r.seed, r.iterations) for r in ctx().train([cut_bf16])] == [(1, 6)] and steps["n"] == 0
    assert ctx().run_dir(cut_bf16) == ctx("precision=fp32").run_dir(cut_bf16) != bf16_dir
    assert ctx("precision=bf16").run_dir(cut_bf16) == bf16_dir


def test_margins_read_as_mean_plus_minus_std_with_a_plain_sentence() -> None:
    from resnetlab.experiments.degradation import finding_lines
    from resnetlab.experiments.runner import judge, judged_lines

    found = [judge("b below a", 1.2, 0.54), judge("c below b", 0.3, 0.54), judge("d below c", -0.9, 0.54),
             judge("e below d", 0.2, None)]
    lines = judged_lines(found, "test 0.54 points")
    assert lines[0] == lines[2] == "" and "mean ± std" in lines[1] and "(test 0.54 points)" in lines[1]
    assert lines[3:] == [
        "- b below a: **+1.20 ± 0.54 points**, shown: larger than its ±, in the paper's direction.",
        "- c below b: **+0.30 ± 0.54 points**, a tie: within its ±, so this budget cannot tell the two apart.",
        "- d below c: **-0.90 ± 0.54 points**, reversed: larger than its ±, against the paper's direction.",
        "- e below d: **+0.20 ± ? points**, leaning: in the paper's direction, but its ± is not measured at this "
        "budget yet, so it is no finding."]
    assert "not measured yet (shown as ± ?)" in judged_lines(found, None)[1]
    both = {"finding": 3, "what": "b beats a", "margin": 0.51, "train_margin": 0.97, "noise": 0.54,
            "train_noise": 0.19, "verdict": "tie"}
    assert finding_lines([both]) == ["- finding 3: b beats a: **test +0.51 ± 0.54, training +0.97 ± 0.19 points**, "
                                     "a tie: not both beyond their ±, so this budget cannot tell the two apart."]
