"""``RUN_DIR/metrics.jsonl`` (one JSON object a line) and the training curves plotted from it.

Rows: ``{"kind": "train", "iter": i, "lr", "train_loss", "train_error", "img_per_s"}`` every ``log_interval``
iterations and ``{"kind": "eval", "iter": i, "val_error", "val_loss", "test_error", "test_loss"}`` at every
evaluation (errors in %). ``iter`` counts finished iterations. On resume the log is cut back to the checkpoint's
iteration, so rows are never duplicated or missing: the resumed run writes the same rows again.

``metrics.jsonl`` is one ``MetricsSink``; ``tensorboard.TensorBoardSink`` (``--set tensorboard=true``) is another.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from .. import io
from ..figures import save_figure


class MetricsSink(Protocol):
    """Where a run's metric rows go (rank 0 only). ``start(i)`` (re)opens the sink for a run at iteration ``i``
    (0 for a new run, the checkpoint's on resume): whatever a killed process wrote after ``i`` is superseded."""

    def start(self, iteration: int) -> None: ...

    def append(self, row: dict[str, Any]) -> None: ...

    def flush(self) -> None:
        """Make every row so far durable (called at each checkpoint: nothing before it can then go missing)."""

    def close(self) -> None: ...


class MetricsLog:
    """``metrics.jsonl``: the default sink and the source of every figure (each row fsynced as written)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def start(self, iteration: int) -> None:
        self.truncate(iteration)

    def flush(self) -> None:
        pass  # append() fsyncs every row

    def close(self) -> None:
        pass

    def rows(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)

    def truncate(self, iteration: int) -> None:
        """Keep only the rows of iterations <= ``iteration`` (the resumed checkpoint's); drops a torn last line."""
        if not self.path.exists():
            return
        kept = [r for r in self.rows() if r["iter"] <= iteration]
        io.atomic_write(self.path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in kept).encode()))

    def append(self, row: dict[str, Any]) -> None:
        io.append_line(self.path, json.dumps(row))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics file; a torn last line (a kill mid-write) is ignored."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def series(rows: Iterable[dict[str, Any]], kind: str, key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in rows:
        if r.get("kind") == kind and r.get(key) is not None:
            xs.append(r["iter"])
            ys.append(r[key])
    return xs, ys


def plot_curves(runs: dict[str, list[dict[str, Any]]], out: Path, title: str = "",
                ylim: tuple[float, float] = (0, 100), test_key: str = "test_error") -> Path:
    """The paper's figure style (Fig. 1, 4, 6): training error dashed, test error bold, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (label, rows) in enumerate(runs.items()):
        color = f"C{i}"
        xs, ys = series(rows, "train", "train_error")
        if xs:
            ax.plot(xs, ys, "--", color=color, linewidth=1)
        xs, ys = series(rows, "eval", test_key)
        if xs:
            ax.plot(xs, ys, "-", color=color, linewidth=2.2, label=label)
        elif label:
            ax.plot([], [], "-", color=color, linewidth=2.2, label=label)
    ax.set_xlabel("iterations")
    ax.set_ylabel("error (%)")
    ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    name = "test" if test_key == "test_error" else "validation"
    ax.set_title(title or f"dashed: training error, bold: {name} error")
    ax.legend(fontsize=8)
    return save_figure(fig, out)
