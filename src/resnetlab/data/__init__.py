"""Data for resnetlab: loading CIFAR (official release or image folders), splits, statistics, augmentation,
batches.

Typical use::

    from resnetlab.data import BatchLoader, load_dataset, make_bundle, normalize

    arrays = load_dataset("cifar10")                       # or a path: tarball, extracted folder, image
    data = make_bundle(arrays, val_size=5000, seed=0)      # the paper's 45k/5k split, per-pixel mean
    loader = BatchLoader(data.train_x, data.train_y, batch_size=128, seed=0, train=True)
    for images, labels in loader.batches(epoch=0):
        inputs = normalize(images.to(device), data.mean, data.std)

All user-facing problems raise :class:`DataError` with a message that says what to do.
"""

from .arrays import SplitArrays
from .augment import CropFlip, apply_crop_flip, draw_crop_flip, normalize, random_crop_flip
from .cache import default_cache_dir
from .cifar import (
    CIFAR10,
    CIFAR10_FOLDER,
    CIFAR10_MD5,
    CIFAR10_URL,
    CIFAR100,
    CIFAR100_FOLDER,
    CIFAR100_MD5,
    CIFAR100_URL,
    CifarRelease,
    download,
    extract_official,
    load_official,
)
from .datasets import (
    DataBundle,
    load_dataset,
    make_bundle,
    per_channel_stats,
    per_pixel_mean,
    split_train_val,
)
from .errors import DataError, DataWarning
from .folder import load_image_folder
from .loader import BatchLoader, derive_seed
from .source import DataSource, TrainBatches

__all__ = [
    "CIFAR10",
    "CIFAR10_FOLDER",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "CIFAR100",
    "CIFAR100_FOLDER",
    "CIFAR100_MD5",
    "CIFAR100_URL",
    "BatchLoader",
    "CifarRelease",
    "CropFlip",
    "DataBundle",
    "DataError",
    "DataSource",
    "DataWarning",
    "SplitArrays",
    "TrainBatches",
    "apply_crop_flip",
    "default_cache_dir",
    "derive_seed",
    "download",
    "draw_crop_flip",
    "extract_official",
    "load_dataset",
    "load_image_folder",
    "load_official",
    "make_bundle",
    "normalize",
    "per_channel_stats",
    "per_pixel_mean",
    "random_crop_flip",
    "split_train_val",
]
