"""Test-time views of an image (Sec. 3.4): center crop, 10-crop and the multi-scale fully-convolutional views.

Everything is relative to the model's training crop side ``c`` (224 on ImageNet, 32 on CIFAR), so every protocol
works for every model:

- ImageNet style (images of any size): the base view has its shorter side resized to ``256/224 * c``; the center
  crop and the 10 crops (four corners + center, and their horizontal flips) are ``c x c`` crops of it.
- Fixed-size style (CIFAR: images are already ``c x c``): the base view is the image itself; the 10 crops are taken
  from it zero-padded by ``pad`` pixels on each side (40x40 for CIFAR), as in training, so the center crop is the
  original image.
- Multi-scale: the whole image with its shorter side resized to each of ``{224, 256, 384, 480, 640} * c / 224``;
  the network runs fully convolutionally on it (its head is global average pooling + fc).

Resizing is bilinear with antialiasing, in float32, rounded back to uint8 for the test views (the training
augmentation keeps float32). Images are ``[3, H, W]`` tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "PAPER_SCALES",
    "PROTOCOLS",
    "ViewSpec",
    "center_crop",
    "crop_offsets",
    "make_views",
    "resize_shorter",
    "ten_crop",
]

PROTOCOLS = ("center", "10crop", "multiscale")
PAPER_SCALES = (224, 256, 384, 480, 640)  # shorter sides of the fully-convolutional test (Sec. 3.4)
REFERENCE_CROP = 224  # the crop the paper's sizes refer to
TEST_RESIZE = 256  # the shorter side the 224 test crops are taken from


@dataclass(frozen=True)
class ViewSpec:
    """How a model's test views are formed: its training crop, the base view's shorter side, the 10-crop padding."""

    crop: int
    resize: int  # shorter side of the base view (== crop for fixed-size data: the image as it is)
    pad: int = 0  # zero padding of the base view before the 10 crops (CIFAR: 4, as in training)
    scales: tuple[int, ...] = PAPER_SCALES  # at the reference crop 224; scaled by crop / 224

    @classmethod
    def imagenet(cls, crop: int = REFERENCE_CROP) -> ViewSpec:
        return cls(crop, round(crop * TEST_RESIZE / REFERENCE_CROP), 0)

    @classmethod
    def fixed(cls, crop: int, pad: int = 4) -> ViewSpec:
        return cls(crop, crop, pad)

    @property
    def scale_sides(self) -> tuple[int, ...]:
        """The multi-scale shorter sides for this crop: 224/224 c, 256/224 c, ... (32, 37, 55, 69, 91 for c=32)."""
        return tuple(round(s * self.crop / REFERENCE_CROP) for s in self.scales)

    @property
    def style(self) -> str:
        return "fixed" if self.resize == self.crop else "imagenet"

    def to_dict(self) -> dict[str, int | str]:
        return {"style": self.style, "crop": self.crop, "resize": self.resize, "pad": self.pad}


def resize_shorter(img: torch.Tensor, side: int, *, to_uint8: bool = True) -> torch.Tensor:
    """``img`` ``[3, H, W]`` with its shorter side resized to ``side`` (aspect kept; bilinear, antialiased).

    Returns uint8 (rounded) or, with ``to_uint8=False``, float32 in the same 0..255 units. An image whose shorter
    side already is ``side`` is returned unchanged (converted to the requested dtype).
    """
    h, w = int(img.shape[-2]), int(img.shape[-1])
    if min(h, w) == side:
        out = img
    else:
        scale = side / min(h, w)
        size = (side, max(side, round(w * scale))) if h <= w else (max(side, round(h * scale)), side)
        out = F.interpolate(img[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    if to_uint8:
        return out if out.dtype == torch.uint8 else out.round_().clamp_(0, 255).to(torch.uint8)
    return out.float()


def crop_offsets(h: int, w: int, crop: int) -> list[tuple[int, int]]:
    """(top, left) of the five crops: top-left, top-right, bottom-left, bottom-right, center."""
    if h < crop or w < crop:
        raise ValueError(f"a {crop}x{crop} crop does not fit a {h}x{w} image")
    return [(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop), ((h - crop) // 2, (w - crop) // 2)]


def center_crop(img: torch.Tensor, crop: int) -> torch.Tensor:
    top, left = crop_offsets(int(img.shape[-2]), int(img.shape[-1]), crop)[4]
    return img[..., top:top + crop, left:left + crop]


def ten_crop(img: torch.Tensor, crop: int) -> torch.Tensor:
    """``[10, 3, crop, crop]``: the five crops of :func:`crop_offsets`, then the same five mirrored horizontally."""
    five = torch.stack([img[:, t:t + crop, s:s + crop] for t, s in crop_offsets(img.shape[-2], img.shape[-1], crop)])
    return torch.cat([five, five.flip(-1)])


def make_views(img: torch.Tensor, protocol: str, spec: ViewSpec) -> list[torch.Tensor]:
    """The test views of one uint8 image ``[3, H, W]`` under ``protocol``; each view is ``[3, h, w]``.

    center: 1 view; 10crop: 10 views of ``crop x crop``; multiscale: 5 whole-image views of different sizes.
    """
    if protocol == "multiscale":
        return [resize_shorter(img, side) for side in spec.scale_sides]
    base = resize_shorter(img, spec.resize)
    if protocol == "center":
        return [center_crop(base, spec.crop).contiguous()]
    if protocol == "10crop":
        if spec.pad:
            base = F.pad(base, (spec.pad,) * 4)
        return list(ten_crop(base, spec.crop).unbind(0))
    raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
