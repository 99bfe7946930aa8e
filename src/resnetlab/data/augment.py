"""Whole-batch augmentation and normalisation on tensors (no Python loop over images).

The paper's CIFAR augmentation (Sec. 4.2): "4 pixels are padded on each side, and a 32x32 crop is randomly
sampled from the padded image or its horizontal flip". Here that is one gather per batch: pad with zeros, then
read every output pixel through a per-image index that combines the crop offset and the flip.

The random draws are separate from their application (:func:`draw_crop_flip`, :func:`apply_crop_flip`) so that
a distributed loader can draw for the whole global batch and apply only its slice, and tests can recompute
them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["CropFlip", "apply_crop_flip", "draw_crop_flip", "normalize", "random_crop_flip"]


@dataclass(frozen=True)
class CropFlip:
    """Per-image random draws: crop offsets into the padded image and horizontal flips."""

    dy: torch.Tensor  # int64 [B], row offset in 0..2*pad
    dx: torch.Tensor  # int64 [B], column offset in 0..2*pad
    flip: torch.Tensor  # bool [B]

    def __getitem__(self, index: slice) -> CropFlip:
        """The draws of a contiguous slice of the batch (``draws[a:b]``)."""
        if not isinstance(index, slice):
            raise TypeError("CropFlip supports slices only, e.g. draws[a:b]")
        return CropFlip(self.dy[index], self.dx[index], self.flip[index])

    def __len__(self) -> int:
        return int(self.dy.shape[0])


def draw_crop_flip(batch: int, pad: int, generator: torch.Generator, flip: bool = True) -> CropFlip:
    """Draw crop offsets (uniform in ``0..2*pad``, rows then columns) and flips (p=0.5) for ``batch`` images.

    The draws use only ``generator``, in a fixed order: ``dy``, ``dx``, then ``flip`` (not drawn if disabled).
    """
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    flips = torch.randint(0, 2, (batch,), generator=generator).bool() if flip else torch.zeros(batch, dtype=torch.bool)
    return CropFlip(dy, dx, flips)


def apply_crop_flip(x: torch.Tensor, pad: int, draws: CropFlip) -> torch.Tensor:
    """Zero-pad ``x`` (``[B, C, H, W]``) by ``pad`` on each side and take each image's ``H x W`` crop at
    ``(dy, dx)``, mirrored horizontally where ``flip`` is set. Same dtype, shape and device as ``x``.

    Output pixel ``[b, c, i, j]`` is ``padded[b, c, dy[b] + i, dx[b] + j]``, or ``padded[b, c, dy[b] + i,
    dx[b] + W - 1 - j]`` if flipped (crop, then flip: both orders give the same distribution).
    """
    if x.dim() != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if len(draws) != b:
        raise ValueError(f"{len(draws)} draws for a batch of {b} images")
    if b == 0:
        return x.clone()
    if pad == 0 and not bool(draws.flip.any()):
        return x.clone()
    device = x.device
    dy, dx, flips = draws.dy.to(device), draws.dx.to(device), draws.flip.to(device)
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x.contiguous()
    wp = w + 2 * pad
    rows = (dy.view(b, 1) + torch.arange(h, device=device)) * wp  # [B, H] row starts in the flat image
    cols = torch.arange(w, device=device).expand(b, w)
    cols = torch.where(flips.view(b, 1), (w - 1) - cols, cols) + dx.view(b, 1)  # [B, W]
    index = (rows.view(b, h, 1) + cols.view(b, 1, w)).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index).view(b, c, h, w)


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator, flip: bool = True) -> torch.Tensor:
    """Random ``H x W`` crop of the zero-padded image and random horizontal flip, per image, for a whole
    batch.

    Args:
        x: images ``[B, C, H, W]`` (uint8 in the loaders; any dtype works).
        pad: zero padding on each side (4 in the paper).
        generator: the only source of randomness.
        flip: also flip horizontally with probability 0.5.
    """
    return apply_crop_flip(x, pad, draw_crop_flip(x.shape[0], pad, generator, flip))


def normalize(
    x: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    memory_format: torch.memory_format = torch.preserve_format,
) -> torch.Tensor:
    """``(x - mean) / std`` as a new ``dtype`` tensor (``std=None``: only subtract the mean, as in the paper).

    Args:
        x: images ``[B, C, H, W]``, usually uint8 0..255 (already on the training device).
        mean: ``[C, H, W]`` (per-pixel), ``[C, 1, 1]`` or ``[C]`` (per-channel), in the units of ``x``.
        std: ``None``, or per-channel ``[C, 1, 1]`` / ``[C]`` (or ``[C, H, W]``).
        dtype: output dtype (e.g. float32, bfloat16).
        memory_format: e.g. ``torch.channels_last``; default keeps ``x``'s layout.

    The input is never modified.
    """

    def prepare(t: torch.Tensor, work: torch.dtype) -> torch.Tensor:
        t = t.to(device=x.device, dtype=work)
        return t.view(-1, 1, 1) if t.dim() == 1 else t

    # Half-precision outputs are computed in float32 and rounded once at the end.
    work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    out = x.to(dtype=work, memory_format=memory_format, copy=True)
    out.sub_(prepare(mean, work))
    if std is not None:
        out.div_(prepare(std, work))
    return out if work == dtype else out.to(dtype)
