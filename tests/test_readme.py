"""The generated blocks of the README and the documentation pages (results, weights cards, config keys) are what
tools/readme.py makes from the committed result files and the code: a result re-rendered without its pages fails
here. The README is a first screen whose links exist, and its Python example runs as written."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from data_utils import REPO


def _tool():
    spec = importlib.util.spec_from_file_location("readme_tool", REPO / "tools" / "readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_and_docs_blocks_match_the_committed_results() -> None:
    tool = _tool()
    for page in tool.pages():
        _, stale = tool.render(page.read_text())
        assert stale == [], f"{page.name} is stale in {stale}: run `python tools/readme.py` and commit"


def test_a_changed_result_or_a_lost_marker_is_caught(tmp_path, monkeypatch) -> None:
    import shutil

    tool = _tool()
    text = (REPO / "docs" / "reproduce.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| resnet110 | 1,727,962 | "))
    _, stale = tool.render(text.replace(row, row.replace("| 1,727,962 |", "| 1,727,963 |"), 1))
    assert stale == ["medium"]
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs, symlinks=True)
    monkeypatch.setattr(tool, "DOCS", docs)
    (docs / "weights.md").write_text((docs / "weights.md").read_text().replace("<!-- generated: cards", "<!-- x"))
    with pytest.raises(SystemExit, match=r"no page holds the block\(s\) cards"):
        tool.main(["--check"])


def test_check_names_the_stale_blocks_and_exits_1(tmp_path, monkeypatch, capsys) -> None:
    import shutil

    tool = _tool()
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs, symlinks=True)
    monkeypatch.setattr(tool, "DOCS", docs)
    text = (docs / "reproduce.md").read_text()
    stale = text.replace("The medium noise: ResNet-20 seeds 0 and 1", "The medium noise: ResNet-20 seeds 0 and 2", 1)
    (docs / "reproduce.md").write_text(stale)
    assert tool.main(["--check"]) == 1
    assert "reproduce.md is stale in: noise" in capsys.readouterr().out
    assert (docs / "reproduce.md").read_text() == stale  # --check writes nothing


def test_the_readme_is_a_first_screen_with_links_that_exist() -> None:
    import re

    text = (REPO / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= 200
    first_command = next(i for i, line in enumerate(lines) if line.startswith("make "))
    assert first_command < 40
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target
    nav = (REPO / "mkdocs.yml").read_text()
    assert {p.name for p in (REPO / "docs").glob("*.md")} == set(re.findall(r": (\S+\.md)$", nav, re.M))


def test_the_medium_budget_judges_with_the_noise_its_committed_seeds_measured() -> None:
    """The noise is computed from the two committed ResNet-20 runs, never typed in; the README says the same."""
    from data_utils import real_data
    from resnetlab.experiments.runner import Context, get_budget

    tool = _tool()
    numbers = [float(x) for x in tool.noise_block().split("a spread of ")[1].split(" points")[0].split(" / ")]
    ctx = Context("table6", get_budget("medium"), str(real_data("cifar10-jpeg")), None, REPO / "runs", progress=False)
    assert ctx.noise == tuple(numbers) == (0.54, 0.19)


def _paper_run(root, iters: list[int], summary: dict | None = None, name: str = "resnet20-s0-0123abcd"):
    import json

    run = root / "runs" / "paper" / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({
        "model": "resnet20", "seed": 0, "recipe": "cifar10_paper", "lr": 0.1, "lr_schedule": "step", "lr_decay": 0.1,
        "milestones": [32000, 48000], "batch_size": 128, "bn_batch": 64, "max_iters": 64000}))
    rows = []
    for it in (1000, 2000, 3000):
        rows += [{"kind": "train", "iter": it, "lr": 0.1}, {"kind": "eval", "iter": it, "val_error": 40.0 - it / 100,
                                                              "test_error": 41.0 - it / 100}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for it in iters:
        (run / f"checkpoint-{it:07d}.pt").write_bytes(b"x")
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_the_paper_block_reports_the_newest_checkpoint_and_the_last_evaluation_before_it(tmp_path, monkeypatch) -> None:
    """Outside a git checkout every file counts; the evaluation after the newest checkpoint is not reported (a
    resume drops it)."""
    tool = _tool()
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    monkeypatch.setattr(tool, "PAPER_RUNS", tmp_path / "runs" / "paper")
    assert "No paper-length run is committed yet" in tool.paper_block()
    _paper_run(tmp_path, [1000, 2000])
    block = tool.paper_block()
    assert "**unfinished**, trained in an unknown precision, committed at iteration 2,000 of 64,000" in block
    assert "at iteration 2,000 (lr 0.1): test error 21.00%, validation 20.00%" in block
    assert "The paper's final test error: 8.75%" in block
    _paper_run(tmp_path, [3000], name="resnet20-s1-4567cdef")  # another run's checkpoint is not this run's
    assert "**unfinished**, trained in an unknown precision, committed at iteration 2,000 of 64,000" \
        in tool.paper_block()


def test_the_official_paper_block_names_each_runs_precision_and_its_final_training_pass(tmp_path, monkeypatch) -> None:
    """All 50k images train, so evaluations carry no validation error; two runs of one net differ by precision."""
    import json

    tool = _tool()
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    monkeypatch.setattr(tool, "OFFICIAL_RUNS", tmp_path / "runs" / "paper")
    run = _paper_run(tmp_path, [2000])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "val_error"}) + "\n"
                                               for r in rows))
    torch.save({"precision": "fp32"}, run / "checkpoint-0002000.pt")
    block = tool.official_paper_block()
    assert block.startswith(f"`{tool.OFFICIAL_COMMAND}` (the official CIFAR-10, all 50k training images):")
    assert ("**unfinished**, trained in fp32, committed at iteration 2,000 of 64,000 (its newest checkpoint); its last "
            "evaluation, at iteration 2,000 (lr 0.1): test error 21.00%. The paper's") in block
    (run / "summary.json").write_text(json.dumps({
        "iterations": 64000, "test_error": 8.5, "train_error": 0.61, "final_train_error": 0.21, "precision": "fp32",
        "seconds": {"train": 16000.0, "eval": 500.0}}))
    assert ("**finished**, 64,000 iterations, trained in fp32: test error **8.50%** (the paper's: 8.75%), training "
            "error 0.21% (the final model on every training image; 0.61% over its last augmented batches); 4.6 h") \
        in tool.official_paper_block()
    # a plain net: the paper has no number for it, only Fig. 1's curves
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "model": "plain20"}))
    assert "test error **8.50%** (the paper shows its curves only, Fig. 1), training error 0.21%" in \
        tool.official_paper_block()
    (run / "summary.json").unlink()
    assert "test error 21.00%. The paper shows its curves only (Fig. 1). The same command resumes it." in \
        tool.official_paper_block()


def test_the_paper_block_reports_a_finished_run_and_rejects_one_without_checkpoint_or_summary(
        tmp_path, monkeypatch) -> None:
    tool = _tool()
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    monkeypatch.setattr(tool, "PAPER_RUNS", tmp_path / "runs" / "paper")
    run = _paper_run(tmp_path, [], {"iterations": 64000, "test_error": 9.1234, "train_error": 0.5,
                                    "seconds": {"train": 7000.0, "eval": 180.0, "checkpoint": 20.0}})
    assert "**finished**, 64,000 iterations: test error **9.12%** (the paper's: 8.75%), training error 0.50%; 2.0 h" \
        in tool.paper_block()
    (run / "summary.json").unlink()
    with pytest.raises(SystemExit, match="neither a summary nor a committed checkpoint"):
        tool.paper_block()


def test_the_finished_paper_block_reads_the_first_step_the_medium_seeds_and_the_release(tmp_path, monkeypatch) -> None:
    import json

    tool = _tool()
    rows = [{"kind": "eval", "iter": it, "test_error": err} for it, err in
            ((31000, 19.0), (32000, 18.5), (33000, 13.0), (34000, 12.25), (35000, 13.5), (36000, 12.75))]
    assert tool._after_first_step(rows, [32000, 48000]) == (
        " Its test error fell from 18.50% at iteration 32,000 (the first lr step) to 13.00% at 33,000, then stayed "
        "between 12.25% and 13.50% over the 3 evaluations after.")
    assert tool._after_first_step(rows[:3], [32000]) == ""  # one evaluation after the step says nothing yet
    assert tool._medium_comparison(tmp_path, "resnet20", 12.0) == ""  # no Table 6 results: no comparison
    (tmp_path / "table6-medium").mkdir()
    (tmp_path / "table6-medium" / "results.json").write_text(json.dumps({"table": [
        {"model": "resnet20", "seeds": 2, "mean": 16.25}, {"model": "resnet56", "seeds": 1, "mean": 9.0}]}))
    assert "ends at 16.25% mean test error over 2 seeds: the full schedule is 4.25 points better" in \
        tool._medium_comparison(tmp_path, "resnet20", 12.0)
    # a run is compared only with the medium budget of its own data: the official runs have none (the JPEG copy's
    # Table 6 is committed, and must not be read for them)
    assert (tool.RESULTS / "table6-medium" / "results.json").is_file()
    assert "medium budget" not in tool.official_paper_block()
    # the committed paper-length runs are released; the official one is resnet20's default weights, and its card's
    # own measurement (from the released file) is given where it differs from the run's last evaluation
    assert tool._released_as("runs/cifar10-jpeg/paper/resnet20-s0-ae0dd32e", 12.84) == (
        " Released as `resnet20.cifar10jpeg_paper`.")
    assert tool._released_as("runs/cifar10/paper/resnet20-s0-357e063c", 8.28) == (
        " Released as `resnet20.cifar10_paper` (what `pretrained=True` loads for resnet20).")
    assert tool._released_as("runs/cifar10/paper/resnet20-s0-357e063c", 8.29).endswith(
        "Scored again from the released file, it gives 8.28%: the file keeps its weights in float16 and is scored "
        "with batch norm folded into the convolutions, roundings that move a borderline image or two.")
    assert tool._released_as("runs/cifar10-jpeg/paper/resnet20-s9-00000000", 9.0) == ""


def test_the_headline_says_not_yet_running_or_the_final_errors_of_each_official_run(tmp_path, monkeypatch) -> None:
    import json

    tool = _tool()
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    monkeypatch.setattr(tool, "OFFICIAL_RUNS", tmp_path / "runs" / "cifar10" / "paper")

    def row(model: str) -> str:
        return next(line for line in tool.headline_block().splitlines() if line.startswith(f"| {model} |"))

    assert row("ResNet-20") == "| ResNet-20 | 8.75 | 8.27 | 8.29 | not yet | - |"
    assert row("plain-56") == "| plain-56 | Fig. 1 (curves) | - | - | not yet | - |"
    run = tmp_path / "runs" / "cifar10" / "paper" / "resnet20-s0-0123abcd"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": "resnet20", "seed": 0, "model_kwargs": {}}))
    (run / "checkpoint-0012000.pt").write_bytes(b"x")
    assert row("ResNet-20").endswith("| 8.29 | running (12,000 of 64,000 iterations committed) | - |")
    other = tmp_path / "runs" / "cifar10" / "paper" / "resnet20-s0-4567cdef"  # the same net in the other precision
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model": "resnet20", "seed": 0, "model_kwargs": {}}))
    torch.save({"precision": "fp32"}, other / "checkpoint-0002000.pt")
    assert row("ResNet-20").endswith("| running (12,000 in an unknown precision, 2,000 in fp32 of 64,000 iterations "
                                     "committed) | - |")
    (run / "summary.json").write_text(json.dumps({"test_error": 8.514, "train_error": 0.61, "final_train_error": 0.2}))
    assert row("ResNet-20") == "| ResNet-20 | 8.75 | 8.27 | 8.29 | **8.51** | 0.20 |"  # the final model's full pass
    (run / "summary.json").write_text(json.dumps({"test_error": 8.514, "train_error": 0.61, "final_train_error": 0.2,
                                                  "precision": "fp32"}))
    assert row("ResNet-20") == "| ResNet-20 | 8.75 | 8.27 | 8.29 | **8.51** (fp32) | 0.20 |"  # what it trained in
    assert row("ResNet-56").endswith("| not yet | - |")


def test_the_readme_python_example_runs_as_written_and_prints_what_it_says(monkeypatch, capsys) -> None:
    """The first Python block of the README, executed from the clone's root: it classifies examples/cat.png."""
    import re

    text = (REPO / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)[1]
    expected = re.search(r"print\(.*\)\s+# (\w+)", code)[1]
    monkeypatch.chdir(REPO)
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out == f"{expected}\n" == "cat\n"


def test_result_blocks_are_rendered_from_results_json_alone(tmp_path, monkeypatch) -> None:
    """The README's tables and claims come from results.json (tables, claim lines, the nets a finding compares),
    never from parsing results.md or the English of a claim."""
    import json
    import shutil

    tool = _tool()
    src = REPO / "results" / "cifar10-jpeg"
    for name in ("degradation-medium", "table6-medium", "responses-medium", "shortcuts-medium", "degradation-quick"):
        shutil.copy(src / name / "results.json", (tmp_path / name).mkdir() or tmp_path / name / "results.json")
    monkeypatch.setattr(tool, "RESULTS", tmp_path)
    before = tool.medium_block()
    assert "| resnet110 | 1,727,962 | 2 | 15.07 | 15.24 ± 0.17 | 6.43 (6.61±0.16) | 6.32 | 6.73 |" in before
    assert tool.findings_block().count("shown") >= 10
    table6 = json.loads((tmp_path / "table6-medium" / "results.json").read_text())
    table6["tables"][0]["rows"][0][3] = "99.99"  # the JSON is the source: a change there shows in the README
    (tmp_path / "table6-medium" / "results.json").write_text(json.dumps(table6))
    assert "| resnet20 | 269,722 | 2 | 99.99 |" in tool.medium_block()
    quick = json.loads((tmp_path / "degradation-quick" / "results.json").read_text())
    del quick["findings"][0]["nets"]
    (tmp_path / "degradation-quick" / "results.json").write_text(json.dumps(quick))
    with pytest.raises(SystemExit, match="a finding names no nets"):
        tool.findings_block()
