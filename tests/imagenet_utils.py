"""Tiny ImageNet-layout trees for the streaming tests: root/train/<class>/*, root/val/<class>/*, sizes that differ."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from resnetlab.train import TrainConfig

WNIDS = ["n01440764", "n01443537", "n01484850"]  # class folders named like ImageNet's
COLOURS = [(210, 50, 40), (40, 190, 60), (50, 60, 210)]


def write_imagenet_folder(root: Path, n_train: int = 8, n_val: int = 3, sizes: tuple[int, int] = (38, 60),
                          seed: int = 0) -> Path:
    """Each class a colour plus noise (learnable in a few iterations); every other image a JPEG, sizes random."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for wnid, colour in zip(WNIDS, COLOURS, strict=True):
            d = root / split / wnid
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
                arr = np.clip(np.array(colour)[None, None] + rng.normal(0, 35, (h, w, 3)), 0, 255).astype(np.uint8)
                name = f"{wnid}_{i:04d}.{'JPEG' if i % 2 else 'png'}"
                Image.fromarray(arr).save(d / name, format="JPEG" if i % 2 else "PNG")
    return root


def stream_config(data: Path, cache: Path, **overrides: Any) -> TrainConfig:
    """The ImageNet recipe's shape on a tiny scale: crops of 32 from shorter sides in [36, 48], CIFAR-size net."""
    return TrainConfig.from_dict(dict(
        model="resnet8", data=str(data), loader="stream", crop_size=32, scale_range=(36, 48), batch_size=8,
        max_iters=8, milestones=(), lr_schedule="plateau", plateau_patience=1, plateau_threshold=100.0,
        eval_interval=2, log_interval=2, val_size=0, eval_test=False, eval_batch_size=4, workers=0,
        cache_dir=str(cache), recipe="test", precision="fp32")).updated(overrides)
