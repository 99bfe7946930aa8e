"""The README's result blocks are what tools/readme.py makes from the committed result files: a result that
changed without its README numbers fails here."""

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
