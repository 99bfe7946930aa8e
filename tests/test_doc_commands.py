"""The ``resnetlab`` commands that the README and the documentation show: those in code blocks parse as written,
those quoted in the text use only options their command has, and every ``--set`` key names a config key. A renamed
flag or key cannot leave a command that exists only in the docs."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator

import pytest

from data_utils import REPO
from resnetlab.cli import build_parser
from resnetlab.train import ConfigError, TrainConfig

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _fenced(text: str) -> Iterator[str]:
    """The lines of the code blocks, continuations joined and comments dropped."""
    fenced, block = False, []
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if fenced:
                joined = re.sub(r"\\\n\s*", " ", "\n".join(block))
                yield from (row.split("  #")[0].strip().removeprefix("$ ") for row in joined.splitlines())
            fenced, block = not fenced, []
        elif fenced:
            block.append(line)


def _argv(line: str) -> list[str] | None:
    if line.startswith("resnetlab "):
        return shlex.split(line)[1:]
    if line.startswith("torchrun") and "resnetlab.cli" in line:  # torchrun ... -m resnetlab.cli train ...
        argv = shlex.split(line)
        return argv[argv.index("resnetlab.cli") + 1:]
    return None


def _commands(inline: bool) -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        lines = re.findall(r"`(resnetlab [^`]+)`", text) if inline else _fenced(text)
        for line in lines:
            line = " ".join(line.split())
            if (argv := _argv(line)) is not None:
                found.append((f"{page.name}: {line}", argv))
    return found


BLOCKS, QUOTED = _commands(inline=False), _commands(inline=True)


def _check_set_keys(where: str, pairs: list[str]) -> None:
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key.startswith("model.") or key.isupper() or not value or value.isupper():
            continue  # a model option, or a placeholder
        try:
            TrainConfig().updated([pair])
        except ConfigError as exc:
            if "unknown config key" in str(exc):
                pytest.fail(f"{where}: {exc}")


def test_the_docs_show_commands_of_every_kind() -> None:
    kinds = {argv[0] for _, argv in BLOCKS + QUOTED if argv and not argv[0].startswith("-")}
    assert {"train", "eval", "predict", "reproduce", "weights", "export", "convert", "models"} <= kinds, kinds


@pytest.mark.parametrize("where, argv", BLOCKS, ids=[w[:100] for w, _ in BLOCKS])
def test_every_command_in_a_code_block_parses_as_written(where: str, argv: list[str]) -> None:
    if any(a in ("--help", "-h", "--version") for a in argv):
        return  # argparse prints and exits
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: does not parse")
    _check_set_keys(where, list(getattr(args, "set", None) or []))


@pytest.mark.parametrize("where, argv", QUOTED, ids=[w[:100] for w, _ in QUOTED])
def test_every_command_quoted_in_the_text_uses_options_its_command_has(where: str, argv: list[str]) -> None:
    """Quoted commands may be fragments (``resnetlab eval``, ``--from torchvision|cifar-reference``), so only their
    command, option names and --set keys are checked."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if not argv or argv[0].startswith("-"):
        return
    assert argv[0] in sub.choices, f"{where}: no command {argv[0]!r}"
    options = sub.choices[argv[0]]._option_string_actions
    flags = [a.split("=")[0] for a in argv[1:] if a.startswith("--")]
    assert [f for f in flags if f not in options] == [], where
    _check_set_keys(where, [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--set"])


def test_the_python_training_example_builds_the_config_it_describes(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Getting started's training example, run with ``fit`` replaced by a stand-in that records the config: the
    recipe, keys and scale it shows give the 640-iteration ResNet-20 run it says, and ``updated`` works as shown."""
    import resnetlab
    from resnetlab.train.engine import RunResult

    text = (REPO / "docs" / "getting-started.md").read_text()
    code = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "resnetlab.fit(" in block)
    seen = []

    def fake_fit(cfg: TrainConfig, run_dir: str, **kw: object) -> RunResult:
        seen.append((cfg, run_dir))
        return RunResult(run_dir, cfg.schedule.max_iters, 1.0, None, 9.5)

    monkeypatch.setattr(resnetlab, "fit", fake_fit)
    exec(compile(code, "getting-started.md", "exec"), {})
    cfg, run_dir = seen[0]
    assert (cfg.model.name, cfg.data.source, cfg.optim.lr, cfg.optim.bn_batch) == (
        "resnet20", "../shared/data/cifar10", 0.05, 64)
    assert cfg.schedule.max_iters == 640 and cfg.schedule.milestones == (320, 480) and run_dir == "runs/from-python"
    assert capsys.readouterr().out == "640 9.5\n"
    assert cfg.updated({"optim.lr": 0.02}).optim.lr == 0.02 and "optim" in cfg.sections()
