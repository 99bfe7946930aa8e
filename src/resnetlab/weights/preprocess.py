"""The preprocessing that travels with trained weights (``get_weights(name).transforms()``, ``model.preprocess``).

A model is only as accurate as its inputs are prepared: a CIFAR net of the paper subtracts the per-pixel mean of its
training images (Sec. 4.2) from 0..255 pixels. This module takes the image formats people have at hand and refuses
the ones it cannot read unambiguously, rather than guess and return silently wrong predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.views import ViewSpec, center_crop, resize_shorter
from ..errors import ResNetLabError

__all__ = ["ImagePreprocess", "Preprocessing"]


class ImagePreprocess(nn.Module):
    """Images in, the model's normalised input out (float32, ``[N, 3, crop, crop]``, or ``[3, crop, crop]``).

    Accepted images:
    - ``uint8`` tensors in 0..255, ``[3, H, W]`` or ``[N, 3, H, W]``;
    - floating-point tensors in [0, 1] (torchvision's ``ToTensor`` convention), same shapes;
    - ``uint8`` numpy arrays ``[H, W, 3]`` or ``[N, H, W, 3]``, and PIL images.
    Images whose side is not ``crop`` are resized (shorter side to ``resize``, antialiased) and center-cropped, as
    ``resnetlab predict`` forms the center view of image files. Floats outside [0, 1] are refused: they are 0..255
    pixels or already normalised, and either would give wrong predictions with no warning.
    """

    mean: Tensor
    std: Tensor | None

    def __init__(self, mean: Tensor, std: Tensor | None, crop: int, resize: int | None = None) -> None:
        super().__init__()
        self.resize = int(resize or crop)  # shorter side before the center crop (ImageNet-style: 256/224 x crop)
        self.register_buffer("mean", mean.detach().float().clone())  # 0..255 units, [3, crop, crop] or [3, 1, 1]
        self.register_buffer("std", None if std is None else std.detach().float().clone())
        self.crop = int(crop)

    def extra_repr(self) -> str:
        kind = "per-pixel mean" if self.mean.shape[-1] > 1 else "per-channel mean"
        return f"crop={self.crop}, {kind}{'' if self.std is None else ' and std'}, inputs uint8 or float in [0, 1]"

    @staticmethod
    def as_tensor(images: Any) -> Tensor:
        """``images`` as a ``[N, 3, H, W]`` or ``[3, H, W]`` tensor in 0..255 units (float32)."""
        if not isinstance(images, Tensor):
            if hasattr(images, "convert") and hasattr(images, "size"):  # a PIL image
                images = np.asarray(images.convert("RGB"))
            if not isinstance(images, np.ndarray):
                raise ResNetLabError(f"cannot preprocess a {type(images).__name__}: pass a tensor, a numpy array or "
                                     "a PIL image")
            if images.dtype != np.uint8 or images.ndim not in (3, 4) or images.shape[-1] != 3:
                raise ResNetLabError(f"a numpy image must be uint8 [H, W, 3] or [N, H, W, 3]; got {images.dtype} "
                                     f"{list(images.shape)}")
            images = torch.from_numpy(np.array(images)).movedim(-1, -3)  # a copy: PIL's arrays are read-only
        if images.dim() not in (3, 4) or images.shape[-3] != 3:
            raise ResNetLabError(f"expected RGB images [3, H, W] or [N, 3, H, W]; got shape {list(images.shape)}")
        if images.dtype == torch.uint8:
            return images.float()
        if not images.is_floating_point():
            raise ResNetLabError(f"images of dtype {images.dtype} are not supported: use uint8 (0..255) or float in "
                                 "[0, 1]")
        lo, hi = float(images.min()), float(images.max())
        if lo < 0.0 or hi > 1.0:
            raise ResNetLabError(f"float images must be in [0, 1] (these range over [{lo:.3g}, {hi:.3g}]): pass uint8 "
                                 "0..255 pixels, or divide by 255; do not normalise them first, this transform does")
        return images.float() * 255.0

    def forward(self, images: Any) -> Tensor:
        x = self.as_tensor(images)
        single = x.dim() == 3
        batch = x[None] if single else x
        if tuple(batch.shape[-2:]) != (self.crop, self.crop):  # as `resnetlab predict` forms its center view
            batch = torch.stack([center_crop(resize_shorter(img, self.resize, to_uint8=False), self.crop)
                                 for img in batch])
        out = batch - self.mean.to(batch.device)
        if self.std is not None:
            out = out / self.std.to(batch.device)
        return out[0] if single else out.contiguous()

    @classmethod
    def for_view(cls, mean: Tensor, std: Tensor | None, view: ViewSpec) -> ImagePreprocess:
        """The preprocessing of a net tested on ``view`` (its crop, and the shorter side it is taken from)."""
        return cls(mean, std, view.crop, view.resize)


class Preprocessing:
    """What a model built with weights carries as ``model.preprocess``: images in, the model's input out. A plain
    object around the :class:`ImagePreprocess` module, so it is not part of the model's state dict or exports."""

    def __init__(self, transform: ImagePreprocess) -> None:
        self.transform = transform

    def __call__(self, images: Any) -> Tensor:
        return self.transform(images)

    def __repr__(self) -> str:
        return f"Preprocessing({self.transform!r})"
