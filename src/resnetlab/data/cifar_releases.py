"""The table of official CIFAR python releases: URLs, MD5 checksums, archive and folder names, file layout.

Shared by the download and extraction code (:mod:`.cifar_archive`) and the pickle reader (:mod:`.cifar`), which
re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import DataError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_FOLDER = "cifar-100-python"

_DATA_HINT = "pass --data <image-folder root | cifar-10-python.tar.gz | cifar10 | cifar100>"


@dataclass(frozen=True)
class CifarRelease:
    """Everything needed to fetch and parse one official release."""

    name: str
    title: str
    url: str
    md5: str
    archive: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int


CIFAR10 = CifarRelease(
    name="cifar10",
    title="CIFAR-10",
    url=CIFAR10_URL,
    md5=CIFAR10_MD5,
    archive="cifar-10-python.tar.gz",
    folder=CIFAR10_FOLDER,
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    num_classes=10,
)
CIFAR100 = CifarRelease(
    name="cifar100",
    title="CIFAR-100",
    url=CIFAR100_URL,
    md5=CIFAR100_MD5,
    archive="cifar-100-python.tar.gz",
    folder=CIFAR100_FOLDER,
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    num_classes=100,
)
_RELEASES = {"cifar10": CIFAR10, "cifar100": CIFAR100}


def get_release(name: str) -> CifarRelease:
    """The release called ``name`` (``cifar10``/``cifar100``; case, ``-`` and ``_`` are ignored)."""
    key = name.lower().replace("-", "").replace("_", "")
    try:
        return _RELEASES[key]
    except KeyError:
        raise DataError(f"unknown dataset name {name!r}: use cifar10 or cifar100, or {_DATA_HINT}") from None
