"""The README's generated blocks (findings, noise, medium results, weights cards) are what tools/readme.py makes
from the committed result files: a result re-rendered without its README fails here. The prose around them is
hand-written and is not checked."""

from __future__ import annotations

import importlib.util

import pytest

from data_utils import REPO


def _tool():
    spec = importlib.util.spec_from_file_location("readme_tool", REPO / "tools" / "readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_blocks_match_the_committed_results() -> None:
    tool = _tool()
    _, stale = tool.render((REPO / "README.md").read_text())
    assert stale == [], f"README.md is stale in {stale}: run `python tools/readme.py` and commit"


def test_a_changed_result_or_a_lost_marker_is_caught() -> None:
    tool = _tool()
    text = (REPO / "README.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| resnet110 | 1,727,962 | "))
    _, stale = tool.render(text.replace(row, row.replace("| 1,727,962 |", "| 1,727,963 |"), 1))
    assert stale == ["medium"]
    with pytest.raises(SystemExit, match="no 'cards' block"):
        tool.render(text.replace("<!-- end: cards -->", ""))


def test_check_names_the_stale_blocks_and_exits_1(tmp_path, monkeypatch, capsys) -> None:
    tool = _tool()
    text = (REPO / "README.md").read_text()
    stale = text.replace("The medium noise: ResNet-20 seeds 0 and 1", "The medium noise: ResNet-20 seeds 0 and 2", 1)
    monkeypatch.setattr(tool, "README", tmp_path / "README.md")
    (tmp_path / "README.md").write_text(stale)
    assert tool.main(["--check"]) == 1
    assert "stale in: noise" in capsys.readouterr().out
    assert (tmp_path / "README.md").read_text() == stale  # --check writes nothing


def test_the_medium_budget_judges_with_the_noise_its_committed_seeds_measured() -> None:
    """Budget.noise is typed in runner.py; the two committed ResNet-20 seeds are what it must be."""
    from resnetlab.experiments.runner import get_budget

    tool = _tool()
    numbers = [float(x) for x in tool.noise_block().split("a spread of ")[1].split(" points")[0].split(" / ")]
    assert get_budget("medium").noise == tuple(numbers)
