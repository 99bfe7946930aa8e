"""The data-source interface: what training and evaluation ask of their data, so that neither asks which kind it has.

Two sources implement it: in-memory tensors (``datasets.DataBundle``: CIFAR, small image folders; optionally kept on
the training device) and a streamed image folder (``stream.StreamData``: ImageNet-sized trees decoded by workers).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import ClassVar, Protocol

import torch

__all__ = ["DataSource", "TrainBatches"]


class DataSource(ABC):
    """A data set split for training: train, val and test splits, class names and normalisation statistics.

    Attributes every source has: ``classes`` (names, in label order), ``mean`` and ``std`` (raw 0..255 units,
    shaped to broadcast over ``[3, H, W]``; ``std`` None for the paper's per-pixel mean subtraction) and ``digest``
    (SHA-256 of the data set's content, what a run's key names; None where unknown).
    """

    classes: list[str]
    mean: torch.Tensor
    std: torch.Tensor | None
    digest: str | None

    can_reside: ClassVar[bool]  # the whole set fits on the training device (``data_on_device``)
    scores_training_set: ClassVar[bool]  # a run scores its final model on every training image once (cheap enough)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    @abstractmethod
    def input_size(self) -> int:
        """The side of the square images the network sees."""

    @property
    @abstractmethod
    def split_digest(self) -> str:
        """SHA-256 of the data and split as trained on: stored in every checkpoint, so that a resume on other data
        (or another split) is refused."""

    @abstractmethod
    def check(self) -> None:
        """Raise a one-line ``DataError`` if the labels do not fit the classes."""

    @abstractmethod
    def split_size(self, split: str) -> int:
        """Images in "train", "val" or "test"."""

    @abstractmethod
    def eval_batches(self, split: str, batch_size: int, *, rank: int = 0, world_size: int = 1,
                     pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of a split as (uint8 images, labels) batches, one unaugmented view per image."""

    @abstractmethod
    def train_loader(self, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1,
                     device: torch.device | None = None, pad: int = 4, flip: bool = True,
                     pin_memory: bool = False) -> TrainBatches:
        """This rank's augmented training batches; with ``device`` (only where ``can_reside``) cut from a copy of
        the set kept there."""


class TrainBatches(Protocol):
    """What a source's ``train_loader`` returns: steps per epoch (``len``), this rank's batch size, and an epoch's
    batches from any position, which depend on (seed, epoch, position) only, so a resume continues exactly."""

    def __len__(self) -> int: ...

    @property
    def local_batch_size(self) -> int: ...

    def batches(self, epoch: int, start: int = 0) -> Iterable[tuple[torch.Tensor, torch.Tensor]]: ...
