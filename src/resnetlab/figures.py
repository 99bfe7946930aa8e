"""Writing matplotlib figures: one PNG format (120 dpi) for every figure the library draws, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import io

DPI = 120  # every figure's resolution: the tests measure figures in these pixels


def save_figure(fig: Any, path: Path) -> Path:
    """Lay ``fig`` out, write it to ``path`` as a PNG (readers see the old file or the whole new one), close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    io.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    plt.close(fig)
    return path
