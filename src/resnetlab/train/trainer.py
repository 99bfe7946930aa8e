"""The trainer: a run's model, optimizer, schedule and batches; one SGD step (with the paper's BN groups), one epoch,
its evaluation, and its state for checkpoints."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import derive_seed, normalize
from ..data.source import DataSource, TrainBatches
from ..errors import ResNetLabError
from ..inference import inference_copy
from ..models import create_model
from ..weights import load_state_dict
from .config import ConfigError, TrainConfig
from .device import Placement, autocast, place
from .distributed import DistInfo, all_reduce_sum, broadcast_buffers
from .evaluate import EvalResult, evaluate_batches
from .init import initialise
from .schedule import LRSchedule


class NonFiniteLossError(ResNetLabError):
    """The loss became NaN or infinite; training stopped without writing a checkpoint."""


def check_num_classes(cfg: TrainConfig, data: DataSource) -> None:
    wanted = cfg.model.options.get("num_classes", data.num_classes)
    if wanted != data.num_classes:
        raise ConfigError(
            f"the data set has {data.num_classes} classes but the model is set to num_classes={wanted}; drop the "
            "model.num_classes override (it defaults to the data's class count)"
        )


@contextlib.contextmanager
def frozen_bn_statistics(bns: list[nn.Module], frozen: bool) -> Any:
    """BN layers normalise with the batch's statistics but leave their running statistics (and counts) alone."""
    if not frozen:
        yield
        return
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    kwargs = {**cfg.model.options, "num_classes": num_classes}
    torch.manual_seed(derive_seed("init", cfg.run.seed))  # the same initial weights on every rank and every rerun
    try:
        return create_model(cfg.model.name, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad model option for {cfg.model.name}: {exc}") from None


class Trainer:
    """Holds a run's model, optimizer, schedule and data; ``train_one_epoch`` advances it, ``state_dict`` saves it."""

    def __init__(self, cfg: TrainConfig, data: DataSource, info: DistInfo | None = None,
                 placement: Placement | None = None) -> None:
        self.cfg, self.data, self.info = cfg, data, info or DistInfo()
        # Where and in what precision it computes, "auto" made concrete (by fit, once; resuming elsewhere may differ).
        self.placement = placement or place(cfg, self.info)
        self.device = self.placement.device
        self.precision = self.placement.precision
        self.eval_precision = self.placement.eval_precision  # what its errors are measured in
        check_num_classes(cfg, data)
        data.check()  # -100 or out-of-range labels: one message now, not a silent loss or a crash
        model = build_model(cfg, data.num_classes)
        self.fmt = torch.channels_last if cfg.hardware.channels_last else torch.contiguous_format
        model = model.to(self.device, memory_format=self.fmt)
        if cfg.hardware.sync_bn and self.info.enabled:
            if self.device.type != "cuda":
                raise ConfigError("sync_bn needs GPUs: PyTorch's SyncBatchNorm has no CPU implementation")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model  # the bare module: its state-dict keys carry no "module." / "_orig_mod." prefix
        if cfg.hardware.activation_checkpointing:
            model.set_grad_checkpointing(True)  # type: ignore[operator]
        if cfg.hardware.compile:
            model.compile()
        self.ddp: nn.Module = model
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                         weight_decay=cfg.optim.weight_decay, nesterov=cfg.optim.nesterov)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.schedule = LRSchedule.from_config(cfg)
        self.mean = data.mean.to(self.device)
        self.std = None if data.std is None else data.std.to(self.device)
        if cfg.hardware.data_on_device == "on" and not data.can_reside:
            raise ConfigError("data_on_device=on keeps in-memory (CIFAR-sized) data on the device; a streamed folder "
                              "(loader=stream) is decoded by workers on the host: use data_on_device=auto or off")
        # the uint8 data set on the device (a GPU by default): no host-to-device copy per step
        self.resident = data.can_reside and self.placement.data_on_device
        self.loader: TrainBatches = data.train_loader(
            cfg.optim.batch_size, cfg.run.seed, rank=self.info.rank, world_size=self.info.world_size,
            device=self.device if self.resident else None, pad=cfg.data.pad, flip=cfg.data.flip,
            pin_memory=self.device.type == "cuda")
        if cfg.schedule.lr_schedule == "plateau" and not self.split_size("val"):
            raise ConfigError("lr_schedule=plateau watches the validation error, but there is no validation split: "
                              "set val_size > 0 (or use a folder with val/ and loader=stream)")
        local = self.loader.local_batch_size
        if local % cfg.optim.grad_accum:
            raise ConfigError(f"grad_accum={cfg.optim.grad_accum} must divide the per-process batch of {local} images")
        # Micro-batches per step: grad_accum (memory), or more so that BN sees at most bn_batch images.
        self.micro_batches = cfg.optim.grad_accum
        if cfg.optim.bn_batch and local > cfg.optim.bn_batch:
            if local % cfg.optim.bn_batch:
                raise ConfigError(f"bn_batch={cfg.optim.bn_batch} must divide the per-process batch of {local} images")
            self.micro_batches = max(cfg.optim.grad_accum, local // cfg.optim.bn_batch)
        # BN running statistics update once per step, from the first micro-batch (bn_batch or grad_accum images):
        # as in the paper's 2-GPU setting, where each GPU normalised its 64 images and one GPU's statistics were
        # kept, and as DDP's rank 0 does here, so 1 process x 2 micro-batches and 2 processes x 1 evaluate alike.
        self.bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.last_lr = cfg.optim.lr  # the lr of the latest step (logged; warm-up may end right after it)
        self.iteration = 0

    def initialise_from(self, source: str) -> str:
        """Fine-tuning: trained weights over the fresh ones, for a new run only (``train --init``); returns the
        sentence for the log. Every rank loads the same file, so the ranks stay equal."""
        return initialise(self.model, self.cfg, source)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    # one iteration: forward, backward and update on one global batch
    def train_step(self, images: Tensor, labels: Tensor) -> tuple[float, float, int]:
        """One SGD step; returns (loss sum, wrong predictions, images) over the global batch."""
        cfg, dev = self.cfg, self.device
        x = normalize(images.to(dev, non_blocking=True), self.mean, self.std, memory_format=self.fmt)
        y = labels.to(dev, non_blocking=True)
        lr = self.last_lr = self.schedule.lr(self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        stats = torch.zeros(3, dtype=torch.float64, device=dev)
        n_local = x.shape[0]
        micro = n_local // self.micro_batches
        for k in range(self.micro_batches):
            xm, ym = x[k * micro:(k + 1) * micro], y[k * micro:(k + 1) * micro]
            last = k == self.micro_batches - 1
            sync = contextlib.nullcontext() if last or not self.info.enabled else self.ddp.no_sync()
            with sync, frozen_bn_statistics(self.bns, k > 0):
                with autocast(dev, self.precision):
                    logits = self.ddp(xm)
                loss = F.cross_entropy(logits.float(), ym, label_smoothing=cfg.optim.label_smoothing)
                self.scaler.scale(loss * (xm.shape[0] / n_local)).backward()
            stats[0] += loss.detach().double() * xm.shape[0]
            stats[1] += (logits.detach().argmax(1) != ym).sum()
            stats[2] += xm.shape[0]
        all_reduce_sum(stats, self.info)
        loss_sum, wrong, count = stats.tolist()
        if not math.isfinite(loss_sum):
            raise NonFiniteLossError(f"the training loss became {loss_sum / count} at iteration {self.iteration + 1}")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.observe(self.iteration, 100.0 * wrong / count)
        self.iteration += 1
        return loss_sum, wrong, int(count)

    def train_one_epoch(self, epoch: int, start: int = 0, stop: int | None = None,
                        on_step: Callable[[Trainer, float, float, int], None] | None = None) -> None:
        """Train on batches ``start..`` of ``epoch`` until the epoch ends or ``self.iteration == stop``.

        ``on_step(trainer, loss_sum, wrong, count)`` runs after every iteration (logging, evaluation, checkpoints).
        """
        self.ddp.train()
        for images, labels in self.loader.batches(epoch, start):
            if stop is not None and self.iteration >= stop:
                return
            loss_sum, wrong, count = self.train_step(images, labels)
            if on_step is not None:
                on_step(self, loss_sum, wrong, count)

    def split_size(self, split: str) -> int:
        """Images in the "val" or "test" split (0: the split is empty and is not evaluated)."""
        return self.data.split_size(split)

    def evaluate(self, split: str, precision: str | None = None) -> EvalResult:
        """The model's error on a split ("val", "test"; or "train": the images it trains on, un-augmented, in-memory
        data only), in ``precision`` (default: ``eval_precision``), each image once."""
        broadcast_buffers(self.model, self.info)  # every rank scores the model that rank 0 checkpoints
        # The inference path (a BN-folded copy): the same function, about 1.5x faster than the training module.
        precision = precision or self.eval_precision
        model = inference_copy(self.model, precision, self.cfg.hardware.channels_last)
        batches = self.data.eval_batches(split, self.cfg.eval.batch_size, rank=self.info.rank,
                                         world_size=self.info.world_size, pin_memory=self.device.type == "cuda")
        return evaluate_batches(model, batches, self.mean, self.std, device=self.device, precision=precision,
                                channels_last=self.cfg.hardware.channels_last, info=self.info)

    # checkpoints
    def state_dict(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "config": self.cfg.to_dict(),
            "precision": self.precision,  # as resolved here: a resume elsewhere says so if it differs
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": rng,
            "classes": list(self.data.classes),
            "mean": self.data.mean,
            "std": self.data.std,
            "input_size": self.data.input_size,
            "world_size": self.info.world_size,
            "meta": self.weights_meta(),  # what a weights file records: the model rebuilds without this config
        }

    def weights_meta(self) -> dict[str, Any]:
        """The model's record, as a weights file and a checkpoint both carry it (``weights/files.py``)."""
        cfg, data = self.cfg, self.data
        return {"model": cfg.model.name, "model_kwargs": {**cfg.model.options, "num_classes": data.num_classes},
                "classes": list(data.classes), "input_size": data.input_size, "pad": cfg.data.pad,
                "normalize": cfg.data.normalize, "loader": cfg.data.loader, "iterations": self.iteration,
                "recipe": cfg.run.recipe, "seed": cfg.run.seed, "data": data.digest,
                "precision": self.precision}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_state_dict(self.model, state["model"], source="checkpoint")
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.iteration = int(state["iteration"])

