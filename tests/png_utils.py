"""Decode the PNG figures the library writes and check what they show, not just that a file exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgb
from PIL import Image

DPI = 120  # every figure of the library is saved at this resolution


def read_png(path: Path) -> np.ndarray:
    """The image as an H x W x 3 uint8 array; fails unless the file is a PNG that decodes completely."""
    with Image.open(path) as im:
        assert im.format == "PNG", (path, im.format)
        im.load()
        return np.asarray(im.convert("RGB"))


def colour_mask(img: np.ndarray, colour: str | tuple[float, ...], tol: int = 10) -> np.ndarray:
    """Pixels within ``tol`` (per channel, 0-255) of a matplotlib colour ("C0", "#1f77b4", an RGB(A) tuple)."""
    target = np.array(to_rgb(colour)) * 255
    return (np.abs(img.astype(np.int16) - target).max(axis=-1) <= tol)


def assert_figure(path: Path, figsize: tuple[float, float], curves: list[str], absent: tuple[str, ...] = (),
                  listed: tuple[str, ...] = ()) -> None:
    """A figure of ``figsize`` inches at the library's DPI that is not blank, in which each colour of ``curves`` is
    drawn across at least a quarter of its width (a curve, not only a legend entry), each colour of ``listed`` at
    least in the legend, and no colour of ``absent`` (not C7, matplotlib's grey: anti-aliased text has that shade)."""
    img = read_png(path)
    width, height = round(figsize[0] * DPI), round(figsize[1] * DPI)
    assert img.shape == (height, width, 3), (path, img.shape)
    drawn = (img < 245).any(axis=-1).mean()
    assert 0.01 < drawn < 0.9, (path, drawn)  # neither blank nor filled
    for colour in curves:
        xs = np.nonzero(colour_mask(img, colour))[1]
        assert xs.size >= 100 and xs.max() - xs.min() >= width // 4, (path, colour, xs.size)
    for colour in listed:
        assert colour_mask(img, colour).sum() >= 30, (path, colour)  # a legend's line sample
    for colour in absent:
        assert not colour_mask(img, colour, tol=4).any(), (path, colour)


def assert_confusion_figure(path: Path, confusion: list[list[int]]) -> None:
    """``resnetlab eval``'s confusion.png: one square cell per (true, predicted) pair, shaded by the row's rate on
    matplotlib's "Blues" scale (white 0, dark blue 1), so every rate of ``confusion`` shows as its shade."""
    from matplotlib import colormaps

    img = read_png(path)
    side = round(max(4.0, 0.45 * len(confusion) + 2) * DPI)
    assert img.shape == (side, side, 3), (path, img.shape)
    for i, row in enumerate(confusion):
        for j, n in enumerate(row):
            shade = colormaps["Blues"](n / max(sum(row), 1))
            assert colour_mask(img, shade, tol=3).sum() >= 500, (path, i, j, n)
