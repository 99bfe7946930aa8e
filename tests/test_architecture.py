"""The house rules, checked: no import cycles between resnetlab's modules (imports inside functions count), no
module much over 800 lines, and training that knows its data only by the data-source interface."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "resnetlab"
# Modules are cut by concept; this cap only guards against one module that does everything.
MAX_LINES = 800


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every resnetlab module that ``name`` imports, at any depth of its code (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # "from pkg import sub" imports the submodule pkg.sub when there is one
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # "import resnetlab.data.cache" -> that module; else its package
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return [*stack[stack.index(m):], m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_the_checker_finds_a_cycle_and_a_function_level_import(tmp_path: Path) -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    pkg = tmp_path / "resnetlab" / "train"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text("def f():\n    from .y import g\n    from .. import models\n")
    known = {"resnetlab": tmp_path, "resnetlab.models": tmp_path, "resnetlab.train": tmp_path,
             "resnetlab.train.x": pkg / "x.py", "resnetlab.train.y": pkg / "y.py"}
    assert imports_of("resnetlab.train.x", pkg / "x.py", known) == {"resnetlab.train.y", "resnetlab.models"}


def test_no_import_cycles() -> None:
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    # a package's __init__ re-exports its submodules: only a submodule importing back into its own package's
    # __init__ (or further up) would make that a cycle, and that is what the search finds
    assert find_cycle(graph) is None


def test_no_module_does_everything() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}


def test_training_knows_its_data_only_by_the_data_source_interface() -> None:
    """The trainer, the engine, resume and the experiments' runner take a ``DataSource``: they name no kind of data
    (``DataBundle``, ``StreamData``) and never ask which one they have; both kinds implement the whole interface."""
    from resnetlab.data import DataBundle, DataSource
    from resnetlab.data.stream import StreamData

    assert issubclass(DataBundle, DataSource) and issubclass(StreamData, DataSource)
    assert DataBundle.__abstractmethods__ == StreamData.__abstractmethods__ == frozenset()  # nothing left out
    for name in ("train/trainer.py", "train/engine.py", "train/resume.py", "experiments/runner.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        named = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        named |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not named & {"DataBundle", "StreamData", "BatchLoader", "StreamLoader"}, name
