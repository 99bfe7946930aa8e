"""The library's import graph: which resnetlab modules each module imports, with every import that points up the layers
(the layers of tools/walk.py) and every private name imported across modules.

    .venv/bin/python tools/imports.py          # one line per module: its layer, lines, and what it imports

Function-level imports count too (they are how a module reaches around a cycle).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from walk import LAYERS, layer

SRC = Path(__file__).resolve().parent.parent / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def graph() -> dict[str, tuple[int, set[str], set[str]]]:
    """module -> (lines, imported resnetlab modules, private names imported from other modules)."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        name = module_name(path)
        tree = ast.parse(path.read_text())
        imported: set[str] = set()
        private: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = resolve(name, path.name == "__init__.py", node)
                if not target.startswith("resnetlab"):
                    continue
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    sub = full if (SRC / Path(*full.split("."))).with_suffix(".py").exists() or \
                        (SRC / Path(*full.split("."))).is_dir() else target
                    if sub != name:
                        imported.add(sub)
                    if alias.name.startswith("_") and not alias.name.startswith("__") and sub == target \
                            and target != name:
                        private.add(f"{target}.{alias.name}")
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names if a.name.startswith("resnetlab") and a.name != name}
        out[name] = (len(path.read_text().splitlines()), imported, private)
    return out


def main() -> int:
    g = graph()
    up = [(m, t) for m, (_, imps, _) in g.items() for t in sorted(imps)
          if layer(t) < layer(m)]
    private = [(m, p) for m, (_, _, ps) in g.items() for p in sorted(ps)]
    print(f"{len(g)} modules, {sum(v[0] for v in g.values()):,} lines; imports up the layers: {len(up)}; private "
          f"names imported across modules: {len(private)}; largest module: "
          f"{max(g, key=lambda m: g[m][0])} ({max(v[0] for v in g.values())} lines)")
    for m, (lines, imps, _) in g.items():
        rank = layer(m)
        where = LAYERS[rank][0] if rank < len(LAYERS) else "?"
        short = ", ".join(sorted(i.removeprefix("resnetlab.") for i in imps)) or "-"
        print(f"  {where:<15} {lines:4d}  {m.removeprefix('resnetlab.') or 'resnetlab'}: {short}")
    for m, t in up:
        print(f"  up: {m} -> {t}")
    for m, p in private:
        print(f"  private: {m} takes {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
