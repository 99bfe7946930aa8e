"""Batch crop/flip augmentation and normalisation."""

from __future__ import annotations

import pytest
import torch

from resnetlab.data import apply_crop_flip, draw_crop_flip, normalize, random_crop_flip


def _images(b: int = 64, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)  # no zeros: padding shows


def _reference(img: torch.Tensor, pad: int, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """One image, computed the obvious way: a zero canvas, the image pasted in, a window cut out, mirrored."""
    c, h, w = img.shape
    canvas = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=img.dtype)
    canvas[:, pad : pad + h, pad : pad + w] = img
    out = canvas[:, dy : dy + h, dx : dx + w]
    return out.flip(-1) if flip else out


def test_shape_dtype_and_identity_without_pad_or_flip() -> None:
    x = _images()
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, 4, g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(random_crop_flip(x, 0, g, flip=False), x)


def test_crop_and_flip_match_per_image_reference() -> None:
    x = _images(b=200, h=7, w=5)  # non-square, so rows and columns cannot be confused
    pad = 3
    draws = draw_crop_flip(x.shape[0], pad, torch.Generator().manual_seed(5))
    assert draws.dy.min() >= 0 and draws.dy.max() <= 2 * pad and draws.dx.max() <= 2 * pad
    assert 0 < int(draws.flip.sum()) < x.shape[0]
    out = apply_crop_flip(x, pad, draws)
    for i in range(x.shape[0]):
        ref = _reference(x[i], pad, int(draws.dy[i]), int(draws.dx[i]), bool(draws.flip[i]))
        assert torch.equal(out[i], ref), i
    # Every offset and both flips occurred, so all code paths were compared.
    assert set(draws.dy.tolist()) == set(range(2 * pad + 1)) == set(draws.dx.tolist())


def test_extreme_offsets_put_zeros_at_the_border() -> None:
    x = _images(b=2, h=6, w=6)
    dy, dx, flip = torch.tensor([0, 8]), torch.tensor([0, 8]), torch.tensor([False, False])
    from resnetlab.data.augment import CropFlip

    out = apply_crop_flip(x, 4, CropFlip(dy, dx, flip))
    # Offset (0, 0): the top-left 4 rows/cols are padding, the image's top-left 2x2 lands at the bottom right.
    assert (out[0, :, :4, :] == 0).all() and (out[0, :, :, :4] == 0).all()
    assert torch.equal(out[0, :, 4:, 4:], x[0, :, :2, :2])
    assert torch.equal(out[1, :, :2, :2], x[1, :, 4:, 4:]) and (out[1, :, 2:, :] == 0).all()


def test_flip_only_mirrors_columns() -> None:
    x = _images(b=3, h=4, w=6)
    draws = draw_crop_flip(3, 0, torch.Generator().manual_seed(0))
    out = apply_crop_flip(x, 0, draws)
    for i in range(3):
        assert torch.equal(out[i], x[i].flip(-1) if draws.flip[i] else x[i])


def test_randomness_comes_only_from_the_generator() -> None:
    x = _images()
    a = random_crop_flip(x, 4, torch.Generator().manual_seed(1))
    torch.manual_seed(999)  # the global RNG must not matter
    b = random_crop_flip(x, 4, torch.Generator().manual_seed(1))
    c = random_crop_flip(x, 4, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_flip_probability_is_about_half() -> None:
    draws = draw_crop_flip(20_000, 4, torch.Generator().manual_seed(0))
    assert abs(draws.flip.float().mean().item() - 0.5) < 0.02
    counts = torch.bincount(draws.dx, minlength=9).float() / 20_000
    assert (counts - 1 / 9).abs().max() < 0.02


def test_normalize_pixel_and_channel() -> None:
    x = _images(b=4, h=3, w=2)
    mean = torch.rand(3, 3, 2) * 255
    out = normalize(x, mean, None)
    assert out.dtype == torch.float32 and torch.allclose(out, x.float() - mean)
    cm, cs = torch.tensor([100.0, 120.0, 90.0]), torch.tensor([50.0, 60.0, 70.0])
    out = normalize(x, cm, cs, dtype=torch.float64, memory_format=torch.channels_last)
    assert out.dtype == torch.float64 and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, (x.double() - cm.double().view(3, 1, 1)) / cs.double().view(3, 1, 1))
    half = normalize(x, cm.view(3, 1, 1), cs.view(3, 1, 1), dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    # A float input is not modified in place.
    xf = x.float()
    normalize(xf, cm, cs)
    assert torch.equal(xf, x.float())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="pad"):
        draw_crop_flip(4, -1, torch.Generator())
    with pytest.raises(ValueError, match="draws for a batch"):
        apply_crop_flip(_images(b=4), 4, draw_crop_flip(3, 4, torch.Generator()))
