"""The paper's learning-rate schedules, counted in iterations: fixed milestones with ResNet-110's error-triggered
warm-up (Sec. 4.2), and ImageNet's "divided by 10 when the error plateaus" (Sec. 3.4)."""

from __future__ import annotations

import math
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
    if cfg.schedule.warmup != "auto":
        return cfg.schedule.warmup == "on"
    from ..models import model_info

    m = re.fullmatch(r"(?:resnet|plain|preact_resnet)(\d+)", cfg.model.name)
    return bool(m) and model_info(cfg.model.name).family == "cifar" and int(m.group(1)) >= 110


@dataclass
class LRSchedule:
    """Step schedule plus warm-up: lr = ``warmup_lr`` until the mean training error of the last ``window``
    iterations falls below ``until_error`` %, then the step schedule (which starts at 0.1: it goes *back* up).

    With ``plateau=True`` the milestones are ignored: lr = ``base_lr * decay**reductions``, and a reduction happens
    when ``patience`` validations in a row failed to beat the best validation error by more than ``threshold``
    points (``observe_validation``, called by the trainer after every evaluation, before the checkpoint is saved).

    The state (whether warm-up is on, the recent errors, where it ended, the plateau's best error, count and
    reductions) is part of every checkpoint.
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
    plateau: bool = False
    patience: int = 5  # validations without improvement before a reduction
    threshold: float = 0.1  # percentage points an error must improve on the best to count
    best: float | None = None
    stale: int = 0  # validations since the best one
    reduced_at: list[int] = field(default_factory=list)  # iterations after which lr was divided
    shape: str = "step"  # step | plateau | cosine | linear (the smooth shapes ignore the milestones)
    total: int = 0  # iterations of the whole run (the smooth shapes reach 0 there)
    ramp: int = 0  # linear warm-up iterations (warmup_iters)

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> LRSchedule:
        s = cfg.schedule
        return cls(cfg.optim.lr, tuple(s.milestones), s.lr_decay, warmup_wanted(cfg), s.warmup_lr,
                   s.warmup_until_error, s.warmup_window, plateau=s.lr_schedule == "plateau",
                   patience=s.plateau_patience, threshold=s.plateau_threshold, shape=s.lr_schedule,
                   total=s.max_iters, ramp=s.warmup_iters)

    @property
    def warming_up(self) -> bool:
        return self.warmup and self.warmup_ended_at is None

    def lr(self, iteration: int) -> float:
        ramp = min(1.0, (iteration + 1) / self.ramp) if self.ramp else 1.0
        return ramp * self._shape_lr(iteration)

    def _shape_lr(self, iteration: int) -> float:
        if self.warming_up:
            return self.warmup_lr
        if self.plateau:
            return self.base_lr * self.decay ** len(self.reduced_at)
        if self.shape in ("cosine", "linear"):
            frac = min(iteration, self.total) / max(self.total, 1)
            scale = (1 + math.cos(math.pi * frac)) / 2 if self.shape == "cosine" else 1 - frac
            return self.base_lr * scale
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

    def observe_validation(self, iteration: int, val_error: float) -> bool:
        """Feed the validation error (%) measured after ``iteration`` iterations; True if lr was just divided."""
        if not self.plateau:
            return False
        if self.best is None or val_error < self.best - self.threshold:
            self.best, self.stale = val_error, 0
            return False
        self.stale += 1
        if self.stale < self.patience:
            return False
        self.reduced_at.append(iteration)
        self.stale = 0  # the best error stays: the next reduction needs another `patience` stale validations
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"warmup": self.warmup, "warmup_ended_at": self.warmup_ended_at, "recent": list(self.recent),
                "plateau": {"best": self.best, "stale": self.stale, "reduced_at": list(self.reduced_at)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warmup = bool(state["warmup"])
        self.warmup_ended_at = state["warmup_ended_at"]
        self.recent = deque(float(e) for e in state["recent"])
        plateau = state.get("plateau") or {}  # absent in checkpoints of step-schedule runs made before it existed
        self.best = plateau.get("best")
        self.stale = int(plateau.get("stale", 0))
        self.reduced_at = [int(i) for i in plateau.get("reduced_at", [])]
