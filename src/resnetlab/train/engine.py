"""The training engine: ``train_one_epoch``, ``evaluate`` and ``fit`` (what ``resnetlab train`` runs).

One run lives in a run directory::

    RUN_DIR/config.json            the resolved TrainConfig (also inside every checkpoint)
    RUN_DIR/metrics.jsonl          training rows every log_interval, evaluation rows every eval_interval
    RUN_DIR/checkpoint-NNNNNNN.pt  (+ .sha256) model, optimizer, schedule, RNG, scaler; newest keep_checkpoints
    RUN_DIR/curves.png             training error dashed, validation/test error bold (the paper's style)
    RUN_DIR/summary.json           final training, validation and test error

Everything random is a function of (seed, epoch, batch index) (see ``data.BatchLoader``), so a resumed run
continues exactly where the uninterrupted one would be, and 2 processes x 64 images train the same parameters as
1 process with 2 micro-batches of 64 (the paper's BN groups of 64: ``bn_batch``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import BatchLoader, DataBundle, derive_seed, load_dataset, make_bundle, normalize
from ..data.arrays import check_labels
from ..data.cache import atomic_write, tensor_digest
from ..data.loader import rank_slice
from ..data.stream import StreamData, StreamLoader
from ..errors import ResNetLabError
from ..inference import COMPUTE_DTYPES, inference_copy
from ..models import create_model
from ..runtime import tune_allocator
from ..safeweights import save_weights
from . import checkpoint as ckpt
from .config import ConfigError, TrainConfig, evaluates_at, validate
from .distributed import DistInfo, all_reduce_sum, barrier, broadcast_buffers, cleanup, init_distributed
from .metrics import MetricsLog, plot_curves, read_metrics
from .schedule import LRSchedule

# Config keys that may differ when a run is resumed: where and how it computes, not what it computes (skip_bad:
# nothing changes while every file decodes). eval_precision is not among them: a run's recorded errors are all
# measured in one precision (fp32 unless set), which every evaluation row and the summary name.
RESUMABLE_CHANGES = {"device", "threads", "eval_batch_size", "cache_dir", "data", "compile", "precision",
                     "channels_last", "workers", "skip_bad"}
_clock = time.perf_counter  # the engine's clock (tests replace it to pin throughput and cost figures)


WEIGHTS_NAME = "model.safetensors"  # a finished run's final weights (safeweights.py): what experiments reuse


class NonFiniteLossError(ResNetLabError):
    """The loss became NaN or infinite; training stopped without writing a checkpoint."""


# --- devices and precision ----------------------------------------------------------------------------------------
def select_device(name: str, info: DistInfo | None = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda but no CUDA GPU is available; use --set device=cpu")
        if device.index is None:
            device = torch.device("cuda", (info or DistInfo()).local_rank)
    return device


def has_fast_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 in hardware: a GPU that supports it, or a CPU with AVX512-BF16 or AMX units
    (elsewhere bf16 autocast is emulated and slower than fp32)."""
    device = torch.device(device)
    if device.type == "cuda":  # bf16 tensor cores from Ampere (8.x) on; is_bf16_supported() also counts emulation
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence looked up defensively
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: torch.device | str = "auto") -> str:
    """``auto`` -> bf16 where the hardware has bf16 units, else fp32; other values as given."""
    if precision != "auto":
        return precision
    return "bf16" if has_fast_bf16(select_device(str(device))) else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision by autocast (weights and optimizer stay fp32); fp32 runs plain."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=COMPUTE_DTYPES[precision])


def set_threads(cfg: TrainConfig, info: DistInfo) -> None:
    """Intra-op threads: the cores of this machine shared between the local processes (the library's choice)."""
    n = cfg.threads or max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else
                               (os.cpu_count() or 1)) // info.local_world_size)
    torch.set_num_threads(n)


# --- evaluation ---------------------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    loss: float
    top1_error: float  # percent
    top5_error: float  # percent
    count: int
    confusion: Tensor | None = None  # [num_classes, num_classes] int64, rows = true class


class ErrorTally:
    """Running sums of an evaluation (loss, top-1 and top-5 mistakes, count, confusion matrix), all-reduced over
    the ranks into an EvalResult."""

    def __init__(self, device: torch.device, num_classes: int | None = None) -> None:
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, top-1 wrong, top-5 wrong, count
        self.k = num_classes or 0
        self.confusion = torch.zeros(self.k * self.k, dtype=torch.int64, device=device)

    def add(self, scores: Tensor, y: Tensor, loss_sum: Tensor) -> None:
        """``scores`` [B, classes] (logits or probabilities), ``y`` [B], the batch's summed loss."""
        top = scores.topk(min(5, scores.shape[1]), dim=1).indices
        self.sums += torch.stack([loss_sum.double(), (top[:, 0] != y).sum().double(),
                                  (~(top == y[:, None]).any(1)).sum().double(),
                                  torch.tensor(float(y.numel()), dtype=torch.float64, device=y.device)])
        if self.k:
            self.confusion += torch.bincount(y * self.k + top[:, 0], minlength=self.k * self.k)

    def result(self, info: DistInfo) -> EvalResult:
        all_reduce_sum(self.sums, info)
        if self.k:
            all_reduce_sum(self.confusion, info)
        loss, top1, top5, count = self.sums.tolist()
        n = max(count, 1.0)
        return EvalResult(loss / n, 100 * top1 / n, 100 * top5 / n, int(count),
                          self.confusion.view(self.k, self.k).cpu() if self.k else None)


@torch.no_grad()
def evaluate(model: nn.Module, images: Tensor, labels: Tensor, mean: Tensor, std: Tensor | None, *,
             batch_size: int = 1000, device: torch.device | str = "cpu", precision: str = "fp32",
             channels_last: bool = True, num_classes: int | None = None, info: DistInfo | None = None,
             progress: bool = False) -> EvalResult:
    """Loss and top-1/top-5 error (%) of ``model`` on uint8 ``images`` [N, 3, H, W] (single view, unaugmented).

    With ``num_classes`` also the confusion matrix. Under DDP every rank evaluates its share and the sums are
    all-reduced, so every rank returns the same result.
    """
    info = info or DistInfo()
    device = torch.device(device)
    check_labels(labels, num_classes, "evaluation labels")  # -100 would be left out of the loss silently
    was_training = model.training
    model.eval()
    share = rank_slice(int(images.shape[0]), info.rank, info.world_size)
    x_all, y_all = images[share], labels[share]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    tally = ErrorTally(device, num_classes)
    starts = range(0, int(x_all.shape[0]), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="eval", unit="batch", leave=False, dynamic_ncols=True)
    try:
        for s in starts:
            x = normalize(x_all[s:s + batch_size].to(device), mean, std, memory_format=fmt)
            y = y_all[s:s + batch_size].to(device)
            with autocast(device, precision):
                logits = model(x)
            logits = logits.float()
            tally.add(logits, y, F.cross_entropy(logits, y, reduction="sum"))
    finally:
        model.train(was_training)
    return tally.result(info)


# --- the trainer --------------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    run_dir: Path
    iterations: int
    train_error: float | None  # % over the last log interval (augmented batches, as the paper's dashed curves)
    val_error: float | None
    test_error: float | None
    summary: dict[str, Any] = field(default_factory=dict)


def check_num_classes(cfg: TrainConfig, data: DataBundle) -> None:
    wanted = cfg.model_kwargs.get("num_classes", data.num_classes)
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
    kwargs = {**cfg.model_kwargs, "num_classes": num_classes}
    torch.manual_seed(derive_seed("init", cfg.seed))  # the same initial weights on every rank and every rerun
    try:
        return create_model(cfg.model, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad model option for {cfg.model}: {exc}") from None


class Trainer:
    """Holds a run's model, optimizer, schedule and data; ``train_one_epoch`` advances it, ``state_dict`` saves it."""

    def __init__(self, cfg: TrainConfig, data: DataBundle | StreamData, info: DistInfo | None = None) -> None:
        validate(cfg)
        self.cfg, self.data, self.info = cfg, data, info or DistInfo()
        self.device = select_device(cfg.device, self.info)
        # The precision this run computes in on this device ("auto" resolved; resuming elsewhere may resolve it anew).
        self.precision = resolve_precision(cfg.precision, self.device)
        if self.precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("this GPU has no bfloat16 support; use --set precision=fp16")
        check_num_classes(cfg, data)
        if isinstance(data, DataBundle):  # -100 or out-of-range labels: one message now, not a silent loss or a crash
            for split, y in (("training", data.train_y), ("validation", data.val_y), ("test", data.test_y)):
                check_labels(y, data.num_classes, f"{split} labels")
        model = build_model(cfg, data.num_classes)
        self.fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model = model.to(self.device, memory_format=self.fmt)
        if cfg.sync_bn and self.info.enabled:
            if self.device.type != "cuda":
                raise ConfigError("sync_bn needs GPUs: PyTorch's SyncBatchNorm has no CPU implementation")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model  # the bare module: its state-dict keys carry no "module." / "_orig_mod." prefix
        if cfg.activation_checkpointing:
            model.set_grad_checkpointing(True)  # type: ignore[operator]
        if cfg.compile:
            model.compile()
        self.ddp: nn.Module = model
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.schedule = LRSchedule.from_config(cfg)
        self.mean = data.mean.to(self.device)
        self.std = None if data.std is None else data.std.to(self.device)
        self.loader: BatchLoader | StreamLoader
        if isinstance(data, StreamData):  # streamed image folder (issue 5): same batches/resume/rank contract
            self.loader = data.train_loader(cfg.batch_size, cfg.seed, rank=self.info.rank,
                                            world_size=self.info.world_size, pin_memory=self.device.type == "cuda")
        else:
            self.loader = BatchLoader(data.train_x, data.train_y, cfg.batch_size, cfg.seed, train=True,
                                      pad=cfg.pad, flip=cfg.flip, rank=self.info.rank,
                                      world_size=self.info.world_size)
        if cfg.lr_schedule == "plateau" and not self.split_size("val"):
            raise ConfigError("lr_schedule=plateau watches the validation error, but there is no validation split: "
                              "set val_size > 0 (or use a folder with val/ and loader=stream)")
        local = self.loader.local_batch_size
        if local % cfg.grad_accum:
            raise ConfigError(f"grad_accum={cfg.grad_accum} must divide the per-process batch of {local} images")
        # Micro-batches per step: grad_accum (memory), or more so that BN sees at most bn_batch images.
        self.micro_batches = cfg.grad_accum
        if cfg.bn_batch and local > cfg.bn_batch:
            if local % cfg.bn_batch:
                raise ConfigError(f"bn_batch={cfg.bn_batch} must divide the per-process batch of {local} images")
            self.micro_batches = max(cfg.grad_accum, local // cfg.bn_batch)
        # BN running statistics update once per step, from the first micro-batch (bn_batch or grad_accum images):
        # as in the paper's 2-GPU setting, where each GPU normalised its 64 images and one GPU's statistics were
        # kept, and as DDP's rank 0 does here, so 1 process x 2 micro-batches and 2 processes x 1 evaluate alike.
        self.bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.last_lr = cfg.lr  # the lr of the latest step (logged; warm-up may end right after it)
        self.iteration = 0

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
                loss = F.cross_entropy(logits.float(), ym, label_smoothing=cfg.label_smoothing)
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
        if isinstance(self.data, StreamData):
            return self.data.split_size(split)
        return int((self.data.val_x if split == "val" else self.data.test_x).shape[0])

    def evaluate(self, split: str) -> EvalResult:
        broadcast_buffers(self.model, self.info)  # every rank scores the model that rank 0 checkpoints
        # The inference path (a BN-folded copy): the same function, about 1.5x faster than the training module.
        precision = resolve_precision(self.cfg.eval_precision, self.device)
        model = inference_copy(self.model, precision, self.cfg.channels_last)
        if isinstance(self.data, StreamData):  # center-crop validation of a streamed folder (Fig. 4's bold curves)
            from .protocols import evaluate_stream

            return evaluate_stream(model, self.data, split, "center", batch_size=self.cfg.eval_batch_size,
                                   device=self.device, precision=precision,
                                   channels_last=self.cfg.channels_last, info=self.info)
        x, y = (self.data.val_x, self.data.val_y) if split == "val" else (self.data.test_x, self.data.test_y)
        return evaluate(model, x, y, self.mean, self.std, batch_size=self.cfg.eval_batch_size,
                        device=self.device, precision=precision, channels_last=self.cfg.channels_last,
                        info=self.info)

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
            "input_size": (self.data.input_size if isinstance(self.data, StreamData)
                           else int(self.data.train_x.shape[-1])),
            "world_size": self.info.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from ..models.weights import load_state_dict

        load_state_dict(self.model, state["model"], source="checkpoint")
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.iteration = int(state["iteration"])


# --- a whole run --------------------------------------------------------------------------------------------------
def load_data(cfg: TrainConfig, info: DistInfo | None = None, progress: bool = True) -> DataBundle | StreamData:
    """Decode (or read from the cache) the data and split it; rank 0 first, so only one process builds the cache.

    With ``loader="stream"`` nothing is decoded: the folder is scanned and the mean image computed (and cached).
    """
    info = info or DistInfo()
    if info.rank != 0:
        barrier(info)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else None
    try:
        if cfg.loader == "stream":
            from ..data.stream import open_stream

            return open_stream(cfg.data, crop=cfg.crop_size, val_size=cfg.val_size, split_seed=cfg.split_seed,
                               normalize=cfg.normalize, scale_range=cfg.scale_range, flip=cfg.flip,
                               lighting=cfg.lighting, mean_images=cfg.mean_images, skip_bad=cfg.skip_bad,
                               workers=cfg.workers, cache_dir=cache, progress=progress and info.is_main)
        arrays = load_dataset(cfg.data, cache_dir=cache, skip_bad=cfg.skip_bad, progress=progress and info.is_main)
    finally:
        if info.rank == 0:
            barrier(info)
    return make_bundle(arrays, cfg.val_size, cfg.split_seed, cfg.normalize)


def _config_differences(a: TrainConfig, b: TrainConfig) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return [f"{k}: {da[k]!r} (run) vs {db[k]!r} (now)" for k in sorted(da)
            if da[k] != db.get(k) and k not in RESUMABLE_CHANGES]


def read_run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / "config.json"
    if not path.is_file():
        raise ResNetLabError(f"{run_dir} is not a run directory (no config.json); start a run with "
                             "`resnetlab train --out DIR`, or give the folder of an existing run to --resume")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ResNetLabError(f"{path} is damaged ({exc}); it cannot be resumed") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _last_checkpoint_text(last: list[tuple[int, Path]]) -> str:
    return f"the last checkpoint {last[-1][1]} is intact" if last else "no checkpoint was written yet"


def _peer_failure(exc: BaseException) -> bool:
    """A collective failed because another process of the job died (gloo / NCCL / the store)."""
    import torch.distributed as dist

    text = str(exc)
    return isinstance(exc, dist.DistError) or any(
        s in text for s in ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Socket Timeout"))


def _data_digest(data: DataBundle | StreamData) -> str | None:
    """SHA-256 of in-memory data and its split (None for streamed data), stored in every checkpoint."""
    if not isinstance(data, DataBundle):
        return None
    return tensor_digest((data.train_x, data.train_y, data.val_x, data.val_y, data.test_x, data.test_y),
                         "\n".join(data.classes).encode())


def _check_same_data(path: Path, state: dict[str, Any], trainer: Trainer, digest: str | None) -> None:
    """Refuse to resume on other data: other classes, or (in-memory data) other images, labels or split."""
    classes = list(trainer.data.classes)
    if list(state.get("classes", classes)) != classes:
        theirs = list(state["classes"])
        raise ckpt.CheckpointError(
            f"{path} was trained on {len(theirs)} classes ({', '.join(theirs[:5])}{', ...' if len(theirs) > 5 else ''})"
            f" but the data now has {len(classes)} ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}): "
            "resume with the run's data set (--data), or start a new run with --out")
    if state.get("data_digest") is not None and state["data_digest"] != digest:
        raise ckpt.CheckpointError(
            f"the data changed since {path} was written (other images, labels or split of {trainer.cfg.data}): "
            "resuming would train on other data. Restore the data the run started with, or start a new run with "
            "--out")


def _has_run(run_dir: Path) -> bool:
    return (run_dir / "config.json").exists() or bool(ckpt.list_checkpoints(run_dir))


class _Progress:
    """tqdm bar on rank 0 with loss, error and img/s; nothing on other ranks or when disabled."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="it", dynamic_ncols=True, smoothing=0.1)

    def update(self, **postfix: str) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def fit(cfg: TrainConfig | None, run_dir: str | Path, *, resume: bool | str = False,
        data: DataBundle | StreamData | None = None,
        progress: bool = True, log: Callable[[str], None] | None = None) -> RunResult:
    """Train ``cfg`` into ``run_dir``; with ``resume=True`` continue the run there (config read from it if ``cfg``
    is None); ``resume="auto"`` resumes a matching run or starts a new one (used by the experiments)."""
    tune_allocator()  # the library's allocator choice (runtime.py)
    run_dir = Path(run_dir)
    if resume is True and not run_dir.exists():
        raise ResNetLabError(f"cannot resume: {run_dir} does not exist (nothing is started in its place)")
    if resume:
        if _has_run(run_dir):
            saved = read_run_config(run_dir)
            if cfg is not None:
                diff = _config_differences(saved, cfg)
                if diff:
                    raise ConfigError(f"cannot resume {run_dir} with a different setup: {'; '.join(diff)}. "
                                      "Start a new run with another --out")
                for key in RESUMABLE_CHANGES:
                    setattr(saved, key, getattr(cfg, key))
            cfg = saved
        elif resume is True:
            raise ResNetLabError(f"cannot resume: {run_dir} holds no run (no config.json)")
    if cfg is None:
        raise ResNetLabError("no config given and nothing to resume")
    if not resume and _has_run(run_dir):
        raise ResNetLabError(f"{run_dir} already holds a run; continue it with `resnetlab train --resume {run_dir}` "
                             "or choose another --out (nothing was overwritten)")
    validate(cfg)
    device = select_device(cfg.device)
    info = init_distributed(device)
    set_threads(cfg, info)
    try:
        lock = ckpt.RunLock(run_dir) if info.is_main else contextlib.nullcontext()
        with lock:
            if not resume and info.is_main and _has_run(run_dir):  # made by another process since the check above
                raise ResNetLabError(f"{run_dir} already holds a run; continue it with `resnetlab train --resume "
                                     f"{run_dir}` or choose another --out (nothing was overwritten)")
            return _fit(cfg, run_dir, info, data, progress, log)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise ResNetLabError(f"the disk is full: cannot write {exc.filename or run_dir} ({exc.strerror}). Files "
                             f"written before are intact; free space and continue with `resnetlab train --resume "
                             f"{run_dir}`") from None
    except RuntimeError as exc:
        if not (info.enabled and _peer_failure(exc)):
            raise
        last = ckpt.list_checkpoints(run_dir)
        raise ResNetLabError(
            f"rank {info.rank} lost contact with another process of the distributed job: it crashed or was killed "
            f"(see its log; {_first_line(exc)[:120]}). Continue with `resnetlab train --resume {run_dir}` (any "
            f"number of processes): {_last_checkpoint_text(last)}") from None
    finally:
        cleanup(info)


def _fit(cfg: TrainConfig, run_dir: Path, info: DistInfo, data: DataBundle | StreamData | None, progress: bool,
         log: Callable[[str], None] | None) -> RunResult:
    main = info.is_main
    data = data if data is not None else load_data(cfg, info, progress)
    trainer = Trainer(cfg, data, info)  # bad data or options fail here, before the run directory is touched
    digest = _data_digest(data)  # in every checkpoint: a resume on changed data is refused
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for tmp in run_dir.glob(".*.tmp"):  # atomic_write's temp files, left by a kill during a write
            tmp.unlink(missing_ok=True)
    bar = _Progress(progress and main, cfg.max_iters, 0, cfg.model)
    say = log or bar.write

    found = ckpt.latest_checkpoint(run_dir, log=say) if run_dir.exists() else None
    if found is None and ckpt.list_checkpoints(run_dir):  # never restart from scratch over a run's history
        raise ckpt.CheckpointError(
            f"none of the checkpoints in {run_dir} can be used (see the warnings above), so the run cannot resume; "
            "nothing was changed. Restore one, or move them away to restart the run from iteration 0")
    if found is not None:
        path, state = found
        diff = _config_differences(TrainConfig.from_dict(state["config"]), cfg)
        if diff:
            raise ckpt.CheckpointError(f"{path} was made by a different run ({'; '.join(diff)}); it does not belong "
                                       f"in {run_dir}")
        _check_same_data(path, state, trainer, digest)
        try:
            trainer.load_state_dict(state)
        except (ResNetLabError, KeyError, ValueError, RuntimeError) as exc:
            raise ckpt.CheckpointError(f"{path} cannot be resumed: {type(exc).__name__}: {_first_line(exc)}; it "
                                       f"does not belong in {run_dir} (move it away to resume from an earlier "
                                       "one)") from None
        if main and trainer.iteration < cfg.max_iters:
            say(f"resuming {run_dir} from {path.name} (iteration {trainer.iteration} of {cfg.max_iters})")
            before = state.get("precision")
            if before and before != trainer.precision:
                say(f"warning: this run trained in {before} up to iteration {trainer.iteration} and continues in "
                    f"{trainer.precision} (precision={cfg.precision} on this machine), so it will not be bit-exact "
                    f"with an uninterrupted run; --set precision={before} keeps {before}")
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    if main:  # only now: a resume refused above has changed nothing
        if found is not None:
            ckpt.set_aside_newer(run_dir, trainer.iteration)
        atomic_write(run_dir / "config.json", lambda f: f.write(cfg.to_json().encode()))
        metrics.truncate(trainer.iteration)
    if bar.bar is not None:
        bar.bar.n = trainer.iteration
        bar.bar.refresh()

    # The logging window: sums since the last training row, and the seconds spent in training steps only, so
    # img/s never counts evaluation time nor images trained before it (eval_interval < log_interval).
    window = {"loss": 0.0, "wrong": 0.0, "count": 0, "seconds": 0.0}
    # What the run cost, in seconds, carried across resumes: training steps, evaluations, checkpoints.
    cost = {"train": 0.0, "eval": 0.0, "checkpoint": 0.0}
    if found is not None:  # the logging window half-filled at the checkpoint: the next row averages the same steps
        window.update(found[1].get("log_window") or {})
        cost.update(found[1].get("cost") or {})
    eval_precision = resolve_precision(cfg.eval_precision, trainer.device)
    mark = [_clock()]  # end of the last step or evaluation: what follows it is training time
    shown: dict[str, str] = {}  # the progress bar's postfix: this batch's loss/error, the last interval's img/s

    def save() -> None:
        if main:
            state = {**trainer.state_dict(), "log_window": dict(window), "cost": dict(cost),
                     "data_digest": digest}
            ckpt.save_checkpoint(state, run_dir / ckpt.checkpoint_name(trainer.iteration))
            ckpt.prune_checkpoints(run_dir, cfg.keep_checkpoints)

    def on_step(t: Trainer, loss_sum: float, wrong: float, count: int) -> None:
        now = _clock()
        window["seconds"] += now - mark[0]
        cost["train"] += now - mark[0]
        mark[0] = now
        window["loss"] += loss_sum
        window["wrong"] += wrong
        window["count"] += count
        it = t.iteration
        err = 100.0 * wrong / count
        shown.update(loss=f"{loss_sum / count:.3f}", err=f"{err:.1f}%", lr=f"{t.last_lr:g}")
        bar.update(**shown)
        if it % cfg.log_interval == 0 or it == cfg.max_iters:
            n = window["count"]
            row = {"kind": "train", "iter": it, "epoch": (it - 1) // t.steps_per_epoch,
                   "lr": t.last_lr, "train_loss": window["loss"] / n,
                   "train_error": 100.0 * window["wrong"] / n, "img_per_s": n / max(window["seconds"], 1e-9)}
            if main:
                metrics.append(row)
            shown["img/s"] = f"{row['img_per_s']:.0f}"
            window.update(loss=0.0, wrong=0.0, count=0, seconds=0.0)
        if evaluates_at(cfg, it):
            row = {"kind": "eval", "iter": it, "eval_precision": eval_precision}
            if t.split_size("val"):
                r = t.evaluate("val")
                row.update(val_error=r.top1_error, val_loss=r.loss)
                t.schedule.observe_validation(it, r.top1_error)  # plateau schedule; saved by the checkpoint below
            if cfg.eval_test:
                r = t.evaluate("test")
                row.update(test_error=r.top1_error, test_loss=r.loss)
            if main:
                metrics.append(row)
            evaluated = _clock()
            cost["eval"] += evaluated - mark[0]
            save()
            mark[0] = _clock()
            cost["checkpoint"] += mark[0] - evaluated

    try:
        while trainer.iteration < cfg.max_iters:
            epoch, start = divmod(trainer.iteration, trainer.steps_per_epoch)
            trainer.train_one_epoch(epoch, start, stop=cfg.max_iters, on_step=on_step)
    except NonFiniteLossError as exc:
        last = ckpt.list_checkpoints(run_dir)
        where = f"the last good checkpoint {last[-1][1]} is intact" if last else "no checkpoint was written yet"
        raise NonFiniteLossError(f"{exc}; training stopped and {where}. Lower the learning rate (--set lr=...), use "
                                 "warm-up (--set warmup=on) or fp32 (--set precision=fp32)") from None
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not isinstance(exc, torch.OutOfMemoryError) and "out of memory" not in str(exc) \
                and "can't allocate memory" not in str(exc):
            raise
        last = ckpt.list_checkpoints(run_dir)
        raise ResNetLabError(
            f"out of memory at iteration {trainer.iteration + 1} ({_first_line(exc)}). Use a smaller batch per "
            "step (--set grad_accum=2 keeps the global batch of "
            f"{cfg.batch_size}), bf16 (--set precision=bf16), activation checkpointing (--set "
            "activation_checkpointing=true), or fewer processes per device. No partial checkpoint was written; "
            f"{_last_checkpoint_text(last)}"
        ) from None
    finally:
        bar.close()
    barrier(info)
    return _finish(trainer, run_dir, main, cost, eval_precision)


def save_final_weights(trainer: Trainer, path: Path) -> str:
    """The run's final weights with its preprocessing and provenance (``safeweights``); returns the SHA-256."""
    cfg, data = trainer.cfg, trainer.data
    input_size = data.input_size if isinstance(data, StreamData) else int(data.train_x.shape[-1])
    meta = {"model": cfg.model, "model_kwargs": {**cfg.model_kwargs, "num_classes": data.num_classes},
            "classes": list(data.classes), "input_size": input_size, "pad": cfg.pad, "normalize": cfg.normalize,
            "loader": cfg.loader, "iterations": trainer.iteration, "recipe": cfg.recipe, "seed": cfg.seed,
            "data": getattr(data, "digest", None), "precision": trainer.precision}
    return save_weights(path, trainer.model.state_dict(), data.mean, data.std, meta)


def _finish(trainer: Trainer, run_dir: Path, main: bool, cost: dict[str, float], eval_precision: str) -> RunResult:
    rows = read_metrics(run_dir / "metrics.jsonl")
    train_rows = [r for r in rows if r["kind"] == "train"]
    eval_rows = [r for r in rows if r["kind"] == "eval"]
    last_eval = eval_rows[-1] if eval_rows else {}
    summary = {
        "model": trainer.cfg.model,
        "model_kwargs": trainer.cfg.model_kwargs,
        "seed": trainer.cfg.seed,
        "iterations": trainer.iteration,
        "train_error": train_rows[-1]["train_error"] if train_rows else None,
        "val_error": last_eval.get("val_error"),
        "test_error": last_eval.get("test_error"),
        "params": sum(p.numel() for p in trainer.model.parameters()),
        "precision": trainer.precision,  # as computed here ("auto" resolved)
        "eval_precision": eval_precision,  # every recorded validation/test error was measured in this precision
        "checkpoint": ckpt.checkpoint_name(trainer.iteration),
        "weights": WEIGHTS_NAME,
        "seconds": {k: round(v, 2) for k, v in cost.items()},
        # evaluation plus checkpointing, as a share of the run's time (training steps included)
        "eval_fraction": round((cost["eval"] + cost["checkpoint"]) / max(sum(cost.values()), 1e-9), 4),
    }
    if main:
        summary["weights_sha256"] = save_final_weights(trainer, run_dir / WEIGHTS_NAME)
        atomic_write(run_dir / "summary.json", lambda f: f.write(json.dumps(summary, indent=2).encode()))
        plot_curves({trainer.cfg.model: rows}, run_dir / "curves.png",
                    test_key="test_error" if trainer.cfg.eval_test else "val_error")
    return RunResult(run_dir, trainer.iteration, summary["train_error"], summary["val_error"], summary["test_error"],
                     summary)

