"""The paper's learning-rate schedule, counted in iterations, with ResNet-110's error-triggered warm-up (Sec. 4.2)."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .config import TrainConfig


def step_lr(iteration: int, base_lr: float, milestones: tuple[int, ...], decay: float) -> float:
    """lr at ``iteration`` (0-based): ``base_lr`` times ``decay`` for every milestone already reached."""
    return base_lr * decay ** sum(iteration >= m for m in milestones)


def warmup_wanted(cfg: TrainConfig) -> bool:
    """The paper warms up ResNet-110 and ResNet-1202 only ("In this case, we find that the initial learning rate of
    0.1 is slightly too large to start converging"); ``warmup=auto`` does so for CIFAR nets of depth >= 110."""
    if cfg.warmup != "auto":
        return cfg.warmup == "on"
    from ..models import model_info

    m = re.fullmatch(r"(?:resnet|plain|preact_resnet)(\d+)", cfg.model)
    return bool(m) and model_info(cfg.model).family == "cifar" and int(m.group(1)) >= 110


@dataclass
class LRSchedule:
    """Step schedule plus warm-up: lr = ``warmup_lr`` until the mean training error of the last ``window``
    iterations falls below ``until_error`` %, then the step schedule (which starts at 0.1: it goes *back* up).

    The state (whether warm-up is on, the recent errors, where it ended) is part of every checkpoint.
    """

    base_lr: float
    milestones: tuple[int, ...]
    decay: float
    warmup: bool = False
    warmup_lr: float = 0.01
    until_error: float = 80.0
    window: int = 20
    warmup_ended_at: int | None = None  # iteration at which lr went back to base_lr
    recent: deque[float] = field(default_factory=deque)

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> LRSchedule:
        return cls(cfg.lr, tuple(cfg.milestones), cfg.lr_decay, warmup_wanted(cfg), cfg.warmup_lr,
                   cfg.warmup_until_error, cfg.warmup_window)

    @property
    def warming_up(self) -> bool:
        return self.warmup and self.warmup_ended_at is None

    def lr(self, iteration: int) -> float:
        if self.warming_up:
            return self.warmup_lr
        return step_lr(iteration, self.base_lr, self.milestones, self.decay)

    def observe(self, iteration: int, train_error: float) -> None:
        """Feed the training error (%) of the batch of ``iteration``; ends the warm-up when it is low enough."""
        if not self.warming_up:
            return
        self.recent.append(train_error)
        while len(self.recent) > self.window:
            self.recent.popleft()
        if len(self.recent) == self.window and sum(self.recent) / self.window < self.until_error:
            self.warmup_ended_at = iteration + 1

    def state_dict(self) -> dict[str, Any]:
        return {"warmup": self.warmup, "warmup_ended_at": self.warmup_ended_at, "recent": list(self.recent)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warmup = bool(state["warmup"])
        self.warmup_ended_at = state["warmup_ended_at"]
        self.recent = deque(float(e) for e in state["recent"])
