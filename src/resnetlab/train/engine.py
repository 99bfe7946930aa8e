"""A whole run: ``fit`` (what ``resnetlab train`` runs) loads the data, builds the ``Trainer``, resumes from the
newest intact checkpoint, and loops over the steps with logging, evaluation and checkpoints, then writes the
summary, the curves and the final weights.

One run lives in a run directory::

    RUN_DIR/config.json            the resolved TrainConfig (also inside every checkpoint)
    RUN_DIR/metrics.jsonl          training rows every log_interval, evaluation rows every eval_interval
    RUN_DIR/checkpoint-NNNNNNN.pt  (+ .sha256) model, optimizer, schedule, RNG, scaler; newest keep_checkpoints
    RUN_DIR/curves.png             training error dashed, validation/test error bold (the paper's style)
    RUN_DIR/summary.json           final training, validation and test error, what evaluation cost
    RUN_DIR/model.safetensors      (+ .sha256) the final weights with their preprocessing (``weights/files.py``)

Everything random is a function of (seed, epoch, batch index) (see ``data.BatchLoader``), so a resumed run
continues exactly where the uninterrupted one would be, and 2 processes x 64 images train the same parameters as
1 process with 2 micro-batches of 64 (the paper's BN groups of 64: ``bn_batch``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import io
from ..data import load_dataset, make_bundle
from ..data.source import DataSource
from ..errors import ResNetLabError
from ..runfiles import WEIGHTS_NAME
from ..runtime import machine, tune_allocator
from ..weights.files import save_weights
from . import checkpoint as ckpt
from .config import TrainConfig, check_model, evaluates_at
from .device import Placement, place, set_threads
from .distributed import DistInfo, barrier, cleanup, init_distributed
from .metrics import MetricsLog, MetricsSink, plot_curves, read_metrics
from .resume import check_same_data, config_differences, data_digest, has_run, read_run_config, resumed_config
from .tensorboard import TensorBoardSink
from .trainer import NonFiniteLossError, Trainer

_clock = time.perf_counter  # the engine's clock (tests replace it to pin throughput and cost figures)
# torch.OutOfMemoryError is torch >= 2.5's name; older ones raise torch.cuda.OutOfMemoryError (a RuntimeError).
OUT_OF_MEMORY: type[Exception] = getattr(torch, "OutOfMemoryError", getattr(torch.cuda, "OutOfMemoryError",
                                                                              RuntimeError))


@dataclass
class RunResult:
    run_dir: Path
    iterations: int
    train_error: float | None  # % over the last log interval (augmented batches, as the paper's dashed curves)
    val_error: float | None
    test_error: float | None
    summary: dict[str, Any] = field(default_factory=dict)



def load_data(cfg: TrainConfig, info: DistInfo | None = None, progress: bool = True) -> DataSource:
    """Decode (or read from the cache) the data and split it; rank 0 first, so only one process builds the cache.

    With ``loader="stream"`` nothing is decoded: the folder is scanned and the mean image computed (and cached).
    """
    info = info or DistInfo()
    if info.rank != 0:
        barrier(info)
    d = cfg.data
    cache = Path(d.cache_dir) if d.cache_dir else None
    try:
        if d.loader == "stream":
            from ..data.stream import open_stream

            return open_stream(d.source, crop=d.crop_size, val_size=d.val_size, split_seed=d.split_seed,
                               normalize=d.normalize, scale_range=d.scale_range, flip=d.flip, lighting=d.lighting,
                               mean_images=d.mean_images, skip_bad=d.skip_bad, workers=d.workers, cache_dir=cache,
                               progress=progress and info.is_main)
        arrays = load_dataset(cfg.data.source, cache_dir=cache, skip_bad=cfg.data.skip_bad, size=cfg.data.image_size,
                              progress=progress and info.is_main)
    finally:
        if info.rank == 0:
            barrier(info)
    return make_bundle(arrays, cfg.data.val_size, cfg.data.split_seed, cfg.data.normalize)



def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _last_checkpoint_text(last: list[tuple[int, Path]]) -> str:
    return f"the last checkpoint {last[-1][1]} is intact" if last else "no checkpoint was written yet"


class _StoppedByLauncher(Exception):
    """SIGTERM from the launcher (torchrun stops the survivors when one process of the job dies, or when the job is
    cancelled): raised in the main thread, so the run ends with one message rather than silently."""


@contextlib.contextmanager
def _launcher_stop(info: DistInfo) -> Iterator[None]:
    """Under torchrun, turn the launcher's SIGTERM into :class:`_StoppedByLauncher` for the duration of the run
    (writes in progress are atomic: a stopped write leaves the previous files intact)."""
    if not info.enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise _StoppedByLauncher

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _peer_failure(exc: BaseException) -> bool:
    """A collective failed because another process of the job died (gloo / NCCL / the store)."""
    import torch.distributed as dist

    text = str(exc)
    return isinstance(exc, dist.DistError) or any(
        s in text for s in ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Socket Timeout"))



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
        data: DataSource | None = None,
        progress: bool = True, log: Callable[[str], None] | None = None) -> RunResult:
    """Train ``cfg`` into ``run_dir``; with ``resume=True`` continue the run there (config read from it if ``cfg``
    is None); ``resume="auto"`` resumes a matching run or starts a new one (used by the experiments)."""
    tune_allocator()  # the library's allocator choice (runtime.py)
    run_dir = Path(run_dir)
    if resume is True and not run_dir.exists():
        raise ResNetLabError(f"cannot resume: {run_dir} does not exist (nothing is started in its place)")
    if resume:
        if has_run(run_dir):
            cfg = resumed_config(read_run_config(run_dir), cfg, run_dir)
        elif resume is True:
            raise ResNetLabError(f"cannot resume: {run_dir} holds no run (no config.json)")
    if cfg is None:
        raise ResNetLabError("no config given and nothing to resume")
    check_model(cfg)  # a bad model name or option fails here, before any data loads
    if not resume and has_run(run_dir):
        raise ResNetLabError(f"{run_dir} already holds a run; continue it with `resnetlab train --resume {run_dir}` "
                             "or choose another --out (nothing was overwritten)")
    placement = place(cfg, DistInfo.from_env())  # every machine-dependent "auto" made concrete, once
    info = init_distributed(placement.device)
    set_threads(cfg, info)
    try:
        lock = ckpt.RunLock(run_dir) if info.is_main else contextlib.nullcontext()
        with _launcher_stop(info), lock:
            if not resume and info.is_main and has_run(run_dir):  # made by another process since the check above
                raise ResNetLabError(f"{run_dir} already holds a run; continue it with `resnetlab train --resume "
                                     f"{run_dir}` or choose another --out (nothing was overwritten)")
            return _fit(cfg, run_dir, info, placement, data, progress, log)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise ResNetLabError(f"the disk is full: cannot write {exc.filename or run_dir} ({exc.strerror}). Files "
                             f"written before are intact; free space and continue with `resnetlab train --resume "
                             f"{run_dir}`") from None
    except _StoppedByLauncher:
        raise ResNetLabError(
            f"rank {info.rank} was stopped by its launcher (SIGTERM): another process of the distributed job ended "
            f"(it crashed or was killed; see its log) or the job was cancelled. Continue with `resnetlab train "
            f"--resume {run_dir}` (any number of processes): "
            f"{_last_checkpoint_text(ckpt.list_checkpoints(run_dir))}") from None
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


def _fit(cfg: TrainConfig, run_dir: Path, info: DistInfo, placement: Placement,
         data: DataSource | None, progress: bool, log: Callable[[str], None] | None) -> RunResult:
    main = info.is_main
    data = data if data is not None else load_data(cfg, info, progress)
    trainer = Trainer(cfg, data, info, placement)  # bad data or options fail here, before the run directory is touched
    digest = data_digest(data)  # in every checkpoint: a resume on changed data is refused
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for tmp in run_dir.glob(".*.tmp"):  # atomic_write's temp files, left by a kill during a write
            tmp.unlink(missing_ok=True)
    bar = _Progress(progress and main, cfg.schedule.max_iters, 0, cfg.model.name)
    say = log or bar.write

    found = ckpt.latest_checkpoint(run_dir, log=say) if run_dir.exists() else None
    if found is None and ckpt.list_checkpoints(run_dir):  # never restart from scratch over a run's history
        raise ckpt.CheckpointError(
            f"none of the checkpoints in {run_dir} can be used (see the warnings above), so the run cannot resume; "
            "nothing was changed. Restore one, or move them away to restart the run from iteration 0")
    if found is not None:
        path, state = found
        diff = config_differences(TrainConfig.from_dict(state["config"]), cfg)
        if diff:
            raise ckpt.CheckpointError(f"{path} was made by a different run ({'; '.join(diff)}); it does not belong "
                                       f"in {run_dir}")
        check_same_data(path, state, list(trainer.data.classes), cfg.data.source, digest)
        try:
            trainer.load_state_dict(state)
        except (ResNetLabError, KeyError, ValueError, RuntimeError) as exc:
            raise ckpt.CheckpointError(f"{path} cannot be resumed: {type(exc).__name__}: {_first_line(exc)}; it "
                                       f"does not belong in {run_dir} (move it away to resume from an earlier "
                                       "one)") from None
        if main and trainer.iteration < cfg.schedule.max_iters:
            say(f"resuming {run_dir} from {path.name} (iteration {trainer.iteration} of {cfg.schedule.max_iters})")
            before = state.get("precision")
            if before and before != trainer.precision:
                say(f"warning: this run trained in {before} up to iteration {trainer.iteration} and continues in "
                    f"{trainer.precision} (precision={cfg.hardware.precision} on this machine), so it will not be "
                    f"bit-exact with an uninterrupted run; --set precision={before} keeps {before}")
    if found is None and cfg.model.init:  # a new run from trained weights; a resumed one never reads them again
        note = trainer.initialise_from(cfg.model.init)
        if main:
            say(note)
    sinks: list[MetricsSink] = []  # rank 0 writes the metrics: metrics.jsonl, and TensorBoard if asked for
    if main:  # only now: a resume refused above has changed nothing
        if found is not None:
            ckpt.set_aside_newer(run_dir, trainer.iteration)
        io.atomic_write(run_dir / "config.json", lambda f: f.write(cfg.to_json().encode()))
        sinks.append(MetricsLog(run_dir / "metrics.jsonl"))
        if cfg.run.tensorboard:
            sinks.append(TensorBoardSink(run_dir / "tensorboard"))
        for sink in sinks:
            sink.start(trainer.iteration)
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
    eval_precision = trainer.eval_precision
    mark = [_clock()]  # end of the last step or evaluation: what follows it is training time
    shown: dict[str, str] = {}  # the progress bar's postfix: this batch's loss/error, the last interval's img/s

    def save() -> None:
        if main:
            state = {**trainer.state_dict(), "log_window": dict(window), "cost": dict(cost),
                     "data_digest": digest,  # of the split the run trains on: a resume on other data is refused
                     "data_content": data.digest}  # of the data set, as in the final weights
            ckpt.save_checkpoint(state, run_dir / ckpt.checkpoint_name(trainer.iteration))
            ckpt.prune_checkpoints(run_dir, cfg.run.keep_checkpoints)
            for sink in sinks:
                sink.flush()

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
        if it % cfg.run.log_interval == 0 or it == cfg.schedule.max_iters:
            n = window["count"]
            row = {"kind": "train", "iter": it, "epoch": (it - 1) // t.steps_per_epoch,
                   "lr": t.last_lr, "train_loss": window["loss"] / n,
                   "train_error": 100.0 * window["wrong"] / n, "img_per_s": n / max(window["seconds"], 1e-9)}
            for sink in sinks:
                sink.append(row)
            shown["img/s"] = f"{row['img_per_s']:.0f}"
            window.update(loss=0.0, wrong=0.0, count=0, seconds=0.0)
        if evaluates_at(cfg, it):
            row = {"kind": "eval", "iter": it, "eval_precision": eval_precision}
            if t.split_size("val"):
                r = t.evaluate("val")
                row.update(val_error=r.top1_error, val_loss=r.loss)
                t.schedule.observe_validation(it, r.top1_error)  # plateau schedule; saved by the checkpoint below
            if cfg.eval.test:
                r = t.evaluate("test")
                row.update(test_error=r.top1_error, test_loss=r.loss)
            for sink in sinks:
                sink.append(row)
            evaluated = _clock()
            cost["eval"] += evaluated - mark[0]
            save()
            mark[0] = _clock()
            cost["checkpoint"] += mark[0] - evaluated

    try:
        while trainer.iteration < cfg.schedule.max_iters:
            epoch, start = divmod(trainer.iteration, trainer.steps_per_epoch)
            trainer.train_one_epoch(epoch, start, stop=cfg.schedule.max_iters, on_step=on_step)
    except NonFiniteLossError as exc:
        last = ckpt.list_checkpoints(run_dir)
        where = f"the last good checkpoint {last[-1][1]} is intact" if last else "no checkpoint was written yet"
        raise NonFiniteLossError(f"{exc}; training stopped and {where}. Lower the learning rate (--set lr=...), use "
                                 "warm-up (--set warmup=on) or fp32 (--set precision=fp32)") from None
    except (OUT_OF_MEMORY, RuntimeError) as exc:
        if not isinstance(exc, OUT_OF_MEMORY) and "out of memory" not in str(exc) \
                and "can't allocate memory" not in str(exc):
            raise
        last = ckpt.list_checkpoints(run_dir)
        raise ResNetLabError(
            f"out of memory at iteration {trainer.iteration + 1} ({_first_line(exc)}). Use a smaller batch per "
            "step (--set grad_accum=2 keeps the global batch of "
            f"{cfg.optim.batch_size}), bf16 (--set precision=bf16), activation checkpointing (--set "
            "activation_checkpointing=true), or fewer processes per device. No partial checkpoint was written; "
            f"{_last_checkpoint_text(last)}"
        ) from None
    finally:
        bar.close()
        for sink in sinks:
            sink.close()
    barrier(info)
    return _finish(trainer, run_dir, main, cost, eval_precision)


def _has_safetensors() -> bool:
    try:
        import safetensors  # noqa: F401
    except ImportError:
        return False
    return True


def save_final_weights(trainer: Trainer, path: Path) -> str:
    """The run's final weights with its preprocessing and provenance (``weights/files.py``); returns the SHA-256."""
    return save_weights(path, trainer.model.state_dict(), trainer.data.mean, trainer.data.std, trainer.weights_meta())


def _finish(trainer: Trainer, run_dir: Path, main: bool, cost: dict[str, float], eval_precision: str) -> RunResult:
    # The final model's error on the images it trained on, un-augmented, each once, in fp32: the running
    # train_error averages augmented batches over the last log window while the weights moved (a sample of a few
    # thousand images). Streamed data (ImageNet) skips it: a full pass costs about a tenth of an epoch's training.
    start = _clock()
    final_train = trainer.evaluate("train", "fp32").top1_error if trainer.data.scores_training_set else None
    cost["eval"] += _clock() - start
    rows = read_metrics(run_dir / "metrics.jsonl")
    train_rows = [r for r in rows if r["kind"] == "train"]
    eval_rows = [r for r in rows if r["kind"] == "eval"]
    last_eval = eval_rows[-1] if eval_rows else {}
    summary = {
        "model": trainer.cfg.model.name,
        "model_kwargs": trainer.cfg.model.options,
        "seed": trainer.cfg.run.seed,
        "iterations": trainer.iteration,
        "train_error": train_rows[-1]["train_error"] if train_rows else None,  # running: the last log window's
        "final_train_error": final_train,  # the final model on every training image, un-augmented, in fp32
        "val_error": last_eval.get("val_error"),
        "test_error": last_eval.get("test_error"),
        "params": sum(p.numel() for p in trainer.model.parameters()),
        "precision": trainer.precision,  # as computed here ("auto" resolved)
        "eval_precision": eval_precision,  # every recorded validation/test error was measured in this precision
        "device": trainer.device.type,  # "auto" resolved, as the precisions
        "data_on_device": trainer.resident,  # in-memory data kept on the device (data_on_device "auto" resolved)
        "warmup": trainer.schedule.warmup,  # warmup "auto" resolved (Sec. 4.2: ResNet-110 and deeper warm up)
        "warmup_ended_at": trainer.schedule.warmup_ended_at,  # the iteration lr went back up to its base, if it did
        "machine": machine(),  # where it trained (its speed and precision depend on it)
        "checkpoint": ckpt.checkpoint_name(trainer.iteration),
        "weights": WEIGHTS_NAME,
        "seconds": (seconds := {k: round(v, 2) for k, v in cost.items()}),
        # evaluation plus checkpointing, as a share of the run's time (training steps included)
        # from the rounded seconds above, so that the summary's figures agree with each other
        "eval_fraction": round((seconds["eval"] + seconds["checkpoint"]) / max(sum(seconds.values()), 1e-9), 4),
    }
    if main:
        if _has_safetensors():
            summary["weights_sha256"] = save_final_weights(trainer, run_dir / WEIGHTS_NAME)
        else:  # e.g. a borrowed GPU machine's own Python (benchmarks/gpu_check.py)
            warnings.warn("safetensors is not installed: no model.safetensors written (pip install safetensors); "
                          "the final checkpoint holds the weights", stacklevel=2)
            summary["weights"] = None
        io.atomic_write(run_dir / "summary.json", lambda f: f.write(json.dumps(summary, indent=2).encode()))
        plot_curves({trainer.cfg.model.name: rows}, run_dir / "curves.png",
                    test_key="test_error" if trainer.cfg.eval.test else "val_error")
    return RunResult(run_dir, trainer.iteration, summary["train_error"], summary["val_error"], summary["test_error"],
                     summary)


