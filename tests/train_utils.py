"""Small learnable data sets and tiny configs for the training tests (seconds each on a CPU)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from resnetlab.data import SplitArrays, make_bundle
from resnetlab.train import TrainConfig

CLASSES = ["a", "b", "c", "d"]


def synthetic_arrays(n_train: int = 96, n_test: int = 32, size: int = 16, seed: int = 0) -> SplitArrays:
    """Each class has its own mean colour plus noise: learnable in a few dozen iterations."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.tensor([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]], dtype=torch.float32)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % len(CLASSES)
        x = colours[y].view(n, 3, 1, 1) + 50 * torch.randn(n, 3, size, size, generator=g)
        return x.clamp(0, 255).to(torch.uint8), y

    tx, ty = make(n_train)
    vx, vy = make(n_test)
    return SplitArrays(tx, ty, vx, vy, list(CLASSES))


def write_image_folder(root: Path, arrays: SplitArrays | None = None) -> Path:
    """The arrays as an image-folder tree of PNG files (root/train/<class>/*.png, root/test/<class>/*.png)."""
    arrays = arrays or synthetic_arrays()
    for split, xs, ys in (("train", arrays.train_x, arrays.train_y), ("test", arrays.test_x, arrays.test_y)):
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            d = root / split / arrays.classes[int(y)]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x.permute(1, 2, 0).numpy().astype(np.uint8)).save(d / f"{i:05d}.png")
    return root


def tiny_config(**overrides: Any) -> TrainConfig:
    # precision fp32: the tests compare runs to 1e-6; "auto" (bf16 here) has its own test
    return TrainConfig.from_dict(dict(model="resnet8", data="unused", batch_size=16, max_iters=12, milestones=(8, 10),
                                      eval_interval=4, log_interval=2, val_size=16, eval_batch_size=64, recipe="test",
                                      precision="fp32")).updated(overrides)


def tiny_bundle(**kw: Any):
    return make_bundle(synthetic_arrays(**kw), val_size=16, seed=0)


def free_port() -> int:
    """A TCP port free right now on the loopback interface (for torchrun's rendezvous in tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
