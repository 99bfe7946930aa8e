"""The in-memory form every data source is decoded to: :class:`SplitArrays`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import DataError

__all__ = ["SplitArrays", "check_labels"]


def check_labels(y: torch.Tensor, num_classes: int | None, what: str = "labels") -> None:
    """Raise :class:`DataError` unless ``y`` holds integer class indices in ``[0, num_classes)``.

    ``num_classes=None`` checks the lower bound only. Cross-entropy silently ignores the label -100 (its
    ``ignore_index``) and fails only in the middle of a run on other out-of-range labels, so every entry point
    that feeds labels to a loss checks them first.
    """
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise DataError(f"{what} must be integer class indices, got {y.dtype}")
    if not y.numel():
        return
    lo, hi = int(y.min()), int(y.max())
    if lo >= 0 and (num_classes is None or hi < num_classes):
        return
    bad = y[(y < 0) | (y >= num_classes)] if num_classes is not None else y[y < 0]
    span = f"[0, {num_classes})" if num_classes is not None else "[0, number of classes)"
    hint = (" (-100 is cross-entropy's ignore_index: it would silently drop those images from the loss; remove "
            "unlabelled images instead)") if bool((bad == -100).any()) else ""
    raise DataError(f"{what} must lie in {span} (class indices); found {bad.numel()} outside it, e.g. "
                    f"{sorted(set(bad[:5].tolist()))}{hint}")


@dataclass
class SplitArrays:
    """Decoded images and labels of a dataset's official train and test splits.

    Attributes:
        train_x: uint8 ``[N, 3, H, W]`` training images, RGB, raw pixel values 0..255.
        train_y: int64 ``[N]`` class indices into ``classes``.
        test_x: uint8 ``[M, 3, H, W]`` test images (the image folder's ``test/`` or ``val/`` split).
        test_y: int64 ``[M]`` class indices.
        classes: class names; ``classes[i]`` is the name of label ``i``.

    The constructor checks dtypes, shapes and label ranges and raises :class:`DataError` if they are wrong.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
                raise DataError(
                    f"{split} images must be uint8 [N, 3, H, W], got {x.dtype} {tuple(x.shape)}; "
                    "this is a bug in the loader that produced them"
                )
            if y.dtype != torch.int64 or y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise DataError(
                    f"{split} labels must be int64 [{x.shape[0]}], got {y.dtype} {tuple(y.shape)}; "
                    "this is a bug in the loader that produced them"
                )
            check_labels(y, len(self.classes), f"{split} labels")
        if self.train_x.shape[2:] != self.test_x.shape[2:]:
            raise DataError(
                f"train images are {tuple(self.train_x.shape[2:])} but test images are "
                f"{tuple(self.test_x.shape[2:])}; both splits must have the same image size"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        """Image height and width."""
        return int(self.train_x.shape[2]), int(self.train_x.shape[3])

    def __repr__(self) -> str:
        h, w = self.image_size
        return (
            f"SplitArrays(train={self.train_x.shape[0]}, test={self.test_x.shape[0]}, "
            f"image=3x{h}x{w}, classes={self.num_classes})"
        )
