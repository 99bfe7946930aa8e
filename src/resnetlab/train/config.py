"""Training configuration: one typed dataclass, the paper's recipes as named presets, overrides from the CLI.

The resolved config (recipe + overrides + ``--scale``) is saved as ``RUN_DIR/config.json`` and inside every
checkpoint, so ``resnetlab train --resume RUN_DIR`` needs nothing else and a checkpoint says how it was made.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ResNetLabError


class ConfigError(ResNetLabError, ValueError):
    """An unknown recipe, an unknown override key or a value of the wrong type."""


Precision = Literal["auto", "fp32", "bf16", "fp16"]
WarmupMode = Literal["auto", "on", "off"]


@dataclass
class TrainConfig:
    """Everything that determines a training run. Iteration counts are *iterations*, not epochs (Sec. 4.2)."""

    # what to train, on what
    model: str = "resnet20"  # the network (`resnetlab models` lists them)
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"shortcut": "B"}; --set model.shortcut=B
    init: str | None = None  # start from these weights (a released name or a file); a new head if the classes differ
    data: str = "cifar10"  # image-folder root, official CIFAR folder/tarball, or "cifar10"/"cifar100"
    cache_dir: str | None = None  # downloads, extracted archives and decoded image caches (None: ~/.cache/resnetlab)
    val_size: int = 5000  # the paper's 45k/5k split (Sec. 4.2); 0 trains on all 50k
    split_seed: int = 0  # the split is fixed across training seeds: the same 5k images are always held out
    normalize: Literal["pixel", "channel"] = "pixel"  # per-pixel mean subtraction (Sec. 4.2) or mean/std
    pad: int = 4  # augmentation: pad 4, random 32x32 crop, random flip (Sec. 4.2)
    flip: bool = True  # random horizontal flips (Sec. 4.2)

    # optimisation (Sec. 4.2): SGD, momentum 0.9, weight decay 1e-4, batch 128
    batch_size: int = 128  # global batch, over all processes (Sec. 4.2: 128)
    lr: float = 0.1  # the base learning rate (Sec. 4.2: 0.1)
    momentum: float = 0.9  # SGD momentum (Sec. 4.2)
    weight_decay: float = 1e-4  # L2 weight decay (Sec. 4.2)
    nesterov: bool = False  # Nesterov momentum (not in the paper)
    milestones: tuple[int, ...] = (32_000, 48_000)  # lr divided by lr_decay^-1 at each
    lr_decay: float = 0.1  # the factor applied at each milestone (Sec. 4.2: divided by 10)
    max_iters: int = 64_000  # training iterations (Sec. 4.2: 64k)
    # ResNet-110/1202: lr 0.01 until the training error is below 80% (about 400 iterations), then back to 0.1
    warmup: WarmupMode = "auto"  # auto: on for CIFAR depth >= 110, as the paper does
    warmup_lr: float = 0.01  # the lr during that warm-up
    warmup_until_error: float = 80.0  # percent, averaged over the last warmup_window iterations
    warmup_window: int = 20  # iterations the warm-up averages the training error over
    # Linear warm-up from lr/warmup_iters to lr over the first warmup_iters iterations (0: none; not in the paper,
    # for short budgets where deeper nets start slowly at lr 0.1), multiplying the schedule's shape
    warmup_iters: int = 0
    grad_accum: int = 1  # micro-batches per step (same global batch, less memory)
    # BN statistics over this many images (0: the whole per-process batch). The paper trained CIFAR on 2 GPUs,
    # so its BN saw 64 of the 128 images; one process here runs 2 micro-batches of 64 to compute the same.
    bn_batch: int = 0
    label_smoothing: float = 0.0  # not in the paper; for experiments only
    # ImageNet (Sec. 3.4): "divided by 10 when the error plateaus": lr /= lr_decay^-1 after plateau_patience
    # evaluations whose validation error did not beat the best by more than plateau_threshold points
    # CIFAR budgets may decay smoothly instead (not in the paper; experiments/runner.py says which and why):
    # "cosine": base_lr * (1 + cos(pi * t / max_iters)) / 2; "linear": base_lr * (1 - t / max_iters).
    lr_schedule: Literal["step", "plateau", "cosine", "linear"] = "step"
    plateau_patience: int = 5  # plateau schedule: evaluations without improvement before the lr drops
    plateau_threshold: float = 0.1  # percentage points of validation top-1 error

    # streaming image folders (loader="stream"): ImageNet-scale trees decoded on the fly by DataLoader workers
    loader: Literal["memory", "stream"] = "memory"  # memory: decode once into uint8 tensors (CIFAR-sized data)
    workers: int = 8  # DataLoader worker processes per training process (0: decode in the training process)
    crop_size: int = 224  # stream: training crop side (Sec. 3.4)
    scale_range: tuple[int, ...] = (256, 480)  # stream: shorter side resized to a random size in [lo, hi]
    lighting: float = 0.1  # stream: std of AlexNet's PCA colour noise ("standard color augmentation"); 0 = off
    mean_images: int = 10_000  # stream: training images sampled for the mean image / channel statistics
    skip_bad: bool = False  # skip unreadable images (each reported by path) instead of stopping
    # image folders in memory: resize the shorter side to this and center-crop a square (None: images must share a
    # size, as CIFAR's do); photos of mixed sizes need it (--image-size)
    image_size: int | None = None

    # bookkeeping
    seed: int = 0  # the training seed: initialisation, batch order and augmentation
    eval_interval: int = 1000  # evaluate on val and test, and checkpoint, every this many iterations
    log_interval: int = 100  # training loss/error rows in metrics.jsonl
    keep_checkpoints: int = 2  # newest checkpoints kept (older ones deleted); the final one is always kept
    eval_test: bool = True  # also evaluate the test set (reported, never used to choose anything)
    eval_batch_size: int = 1000  # images per forward pass when evaluating
    tensorboard: bool = False  # also write RUN_DIR/tensorboard/ events (pip install resnetlab[tensorboard])

    # how
    device: str = "auto"  # auto: cuda if available, else cpu
    # auto: bf16 autocast where the hardware has bf16 units (about 1.5x fp32 on such CPUs; the docs' Speed page
    # compares its test error with fp32's), else fp32. The paper trained in fp32 (2015 predates mixed precision).
    precision: Precision = "auto"
    # The recorded validation/test errors are the fp32 model's: bf16 inference changed 0.76% of the quick ResNet-56's
    # test predictions (docs, Speed), and evaluating costs about 1% of a CIFAR run.
    eval_precision: Precision = "fp32"
    channels_last: bool = True  # NHWC memory layout (faster convolutions on CPUs and GPUs; same results)
    # in-memory data (CIFAR) kept on the training device, augmented there; auto: on CUDA only (same batches)
    data_on_device: Literal["auto", "on", "off"] = "auto"
    compile: bool = False  # model.compile(): keeps state-dict keys free of "_orig_mod."
    activation_checkpointing: bool = False  # recompute block activations in backward: ResNet-1202 in < 12 GB
    sync_bn: bool = False  # GPU only: PyTorch's SyncBatchNorm has no CPU kernel
    threads: int = 0  # intra-op threads; 0 lets the library choose (all cores of this process's share)

    # provenance
    recipe: str = "custom"
    scale: float = 1.0  # already applied to milestones/max_iters/eval_interval/log_interval; kept for the record

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        d["scale_range"] = list(self.scale_range)  # JSON has no tuples: lists compare equal after a round trip
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}: the run was made by another version of resnetlab")
        cfg = cls(**{k: v for k, v in d.items()})
        cfg.milestones = tuple(int(m) for m in cfg.milestones)
        cfg.scale_range = tuple(int(m) for m in cfg.scale_range)
        return cfg

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# --- recipes ----------------------------------------------------------------------------------------------------------
IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC-2012 training set
IMAGENET_EPOCH_ITERS = -(-IMAGENET_TRAIN_IMAGES // 256)  # 5,005 iterations of batch 256 per epoch
# Sec. 3.4: SGD batch 256, weight decay 1e-4, momentum 0.9, 60e4 iterations; scale augmentation [256, 480], 224
# crops, flips, per-pixel mean, PCA lighting. Validation = the folder's val/ tree (val_size=0), center crop, once
# an epoch. The data streams from disk (loader="stream"): ImageNet does not fit in memory.
_IMAGENET: dict[str, Any] = {
    "model": "resnet50", "data": "imagenet", "loader": "stream", "batch_size": 256, "lr": 0.1, "momentum": 0.9,
    "weight_decay": 1e-4, "max_iters": 600_000, "crop_size": 224, "scale_range": (256, 480), "lighting": 0.1,
    "normalize": "pixel", "val_size": 0, "eval_test": False, "eval_interval": IMAGENET_EPOCH_ITERS,
    "log_interval": 100, "eval_batch_size": 200,
}

RECIPES: dict[str, dict[str, Any]] = {
    # Sec. 4.2: batch 128, lr 0.1 / 10 at 32k and 48k, stop at 64k, 45k/5k split, per-pixel mean, pad-crop-flip.
    "cifar10_paper": {"data": "cifar10", "bn_batch": 64},
    # The same recipe on CIFAR-100 (Identity Mappings paper, Table 2, uses it).
    "cifar100_paper": {"data": "cifar100", "bn_batch": 64},
    # Sec. 3.4, ImageNet: batch 256, lr 0.1 divided by 10 when the validation error plateaus, 60e4 iterations.
    "imagenet_paper": {**_IMAGENET, "lr_schedule": "plateau", "milestones": ()},
    # The fixed-milestone variant: /10 after 30 and 60 epochs of ImageNet at batch 256, in iterations.
    "imagenet_paper_steps": {**_IMAGENET, "lr_schedule": "step",
                             "milestones": (30 * IMAGENET_EPOCH_ITERS, 60 * IMAGENET_EPOCH_ITERS)},
    # Not in the paper: fine-tuning trained weights (--init, a new head where the classes differ) on one's own
    # images. A tenth of the paper's lr, decayed along a cosine over 2,000 iterations of batch 64; no validation split
    # (a small folder has few images to spare; its test/ or val/ tree is scored every 500 iterations).
    "finetune": {"lr": 0.01, "lr_schedule": "cosine", "milestones": (), "max_iters": 2_000, "batch_size": 64,
                 "val_size": 0, "eval_interval": 500, "log_interval": 50},
}
# One line per recipe, for `resnetlab train --help` and the docs.
RECIPE_NOTES: dict[str, str] = {
    "cifar10_paper": "CIFAR-10, Sec. 4.2: 64k iterations, lr 0.1 /10 at 32k and 48k, batch 128, BN over 64",
    "cifar100_paper": "the same recipe on CIFAR-100",
    "imagenet_paper": "ImageNet, Sec. 3.4: batch 256, lr 0.1 /10 when the validation error plateaus, 60e4 iterations",
    "imagenet_paper_steps": "ImageNet with lr /10 after epochs 30 and 60",
    "finetune": "fine-tune --init weights on your images: 2,000 iterations, lr 0.01 cosine, batch 64, no val split",
}

_SCALED = ("milestones", "max_iters", "eval_interval", "log_interval", "warmup_iters")
# An evaluation (5k validation + 10k test images, in fp32) costs about as much as 50 training steps of the same net
# in bf16 (docs, Speed: "What evaluation costs"), so a scaled schedule never evaluates more often than every
# MIN_EVAL_INTERVAL iterations (the paper's own interval here): about 5% of a run's time. Runs shorter than this
# evaluate once, at the end (that one evaluation is still about 10% of a 500-iteration run).
MIN_EVAL_INTERVAL = 1000


def recipe_config(name: str) -> TrainConfig:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose from {', '.join(sorted(RECIPES))}")
    return TrainConfig(recipe=name, **RECIPES[name])


def apply_scale(cfg: TrainConfig, scale: float) -> TrainConfig:
    """Multiply every iteration count of the schedule by ``scale`` (quick runs keep the schedule's shape)."""
    if not scale > 0:
        raise ConfigError(f"--scale must be positive, got {scale}")
    if scale == 1.0:
        return cfg
    cfg.milestones = tuple(max(1, round(m * scale)) for m in cfg.milestones)
    cfg.max_iters = max(1, round(cfg.max_iters * scale))
    cfg.warmup_iters = min(round(cfg.warmup_iters * scale), cfg.max_iters - 1)
    cfg.eval_interval = max(min(cfg.eval_interval, MIN_EVAL_INTERVAL), round(cfg.eval_interval * scale))
    cfg.log_interval = max(min(cfg.log_interval, 10), round(cfg.log_interval * scale))  # >= 10: readable logs
    cfg.scale = cfg.scale * scale
    return cfg


def evaluates_at(cfg: TrainConfig, iteration: int) -> bool:
    """Whether the run evaluates (and checkpoints) after ``iteration`` (1-based): every eval_interval and at the
    end."""
    return iteration % cfg.eval_interval == 0 or iteration == cfg.max_iters


def evaluation_iterations(cfg: TrainConfig) -> list[int]:
    """Every iteration after which the run evaluates (and checkpoints)."""
    return sorted({*range(cfg.eval_interval, cfg.max_iters + 1, cfg.eval_interval), cfg.max_iters})


def _convert(key: str, text: str, hint: Any) -> Any:
    """Parse ``text`` as the type ``hint`` of field ``key``; a wrong type is a ConfigError naming the key."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(key, text, inner[0])
    if origin is Literal:
        if text not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}, got {text!r}")
        return text
    if origin is tuple:
        parts = [p for p in text.replace("[", "").replace("]", "").split(",") if p.strip()]
        return tuple(_convert(key, p.strip(), args[0]) for p in parts)
    if hint is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} must be true or false, got {text!r}")
    if hint in (int, float):
        try:
            value = hint(text)
        except ValueError:
            try:  # 64e3 for an int field
                value = float(text)
            except ValueError:
                raise ConfigError(f"{key} must be a number ({hint.__name__}), got {text!r}") from None
            if hint is int and not value.is_integer():
                raise ConfigError(f"{key} must be a whole number, got {text!r}") from None
            value = hint(value)
        return value
    if hint is str:
        return text
    raise ConfigError(f"{key} cannot be set from the command line")


def _model_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _typed(key: str, value: Any, hint: Any) -> Any:
    """A value given in Python as the field's type: an int for a float field is a float (a run's key hashes the
    config as JSON, where 1 and 1.0 differ), a list for a tuple field a tuple."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if (hint is float or float in args) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        return tuple(value)
    return value


def apply_overrides(cfg: TrainConfig, pairs: list[str] | dict[str, Any]) -> TrainConfig:
    """Apply overrides and validate the result once: ``key=value`` strings (``--set``; ``model.KEY=VALUE`` sets a
    model option, ``model.shortcut=B``) are parsed by the field's type; a dict's values are taken as typed."""
    _apply(cfg, pairs)
    validate(cfg)
    return cfg


def _apply(cfg: TrainConfig, pairs: list[str] | dict[str, Any]) -> None:
    hints = typing.get_type_hints(TrainConfig)
    items = pairs.items() if isinstance(pairs, dict) else [_split(p) for p in pairs]
    for key, value in items:
        if key.startswith("model."):
            cfg.model_kwargs = {**cfg.model_kwargs, key[6:]: _model_value(value) if isinstance(value, str) else value}
            continue
        if key not in hints or key in ("recipe", "scale"):
            close = [k for k in hints if key in k or k in key][:3]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}; keys: {', '.join(sorted(hints))}")
        value = _convert(key, value, hints[key]) if isinstance(value, str) else _typed(key, value, hints[key])
        setattr(cfg, key, value)


def _split(pair: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {pair!r} must look like key=value (e.g. --set lr=0.05)")
    return key.strip(), value.strip()


def validate(cfg: TrainConfig) -> None:
    checks = [
        (cfg.batch_size > 0, f"batch_size must be positive, got {cfg.batch_size}"),
        (cfg.max_iters > 0, f"max_iters must be positive, got {cfg.max_iters}"),
        (cfg.lr > 0, f"lr must be positive, got {cfg.lr}"),
        (cfg.grad_accum >= 1, f"grad_accum must be >= 1, got {cfg.grad_accum}"),
        (cfg.bn_batch >= 0, f"bn_batch must be >= 0 (0: the whole per-process batch), got {cfg.bn_batch}"),
        (cfg.eval_interval > 0 and cfg.log_interval > 0, "eval_interval and log_interval must be positive"),
        (cfg.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1, got {cfg.keep_checkpoints}"),
        (list(cfg.milestones) == sorted(cfg.milestones), f"milestones must increase, got {list(cfg.milestones)}"),
        (cfg.precision in typing.get_args(Precision),
         f"precision must be auto, fp32, bf16 or fp16, got {cfg.precision!r}"),
        (cfg.eval_precision in typing.get_args(Precision),
         f"eval_precision must be auto, fp32, bf16 or fp16, got {cfg.eval_precision!r}"),
        (cfg.warmup in ("auto", "on", "off"), f"warmup must be auto, on or off, got {cfg.warmup!r}"),
        (0 < cfg.warmup_until_error <= 100, "warmup_until_error is a percentage in (0, 100]"),
        (0 <= cfg.warmup_iters < cfg.max_iters, f"warmup_iters must be in [0, max_iters), got {cfg.warmup_iters}"),
        (cfg.lr_schedule in ("step", "plateau", "cosine", "linear"),
         f"lr_schedule must be step, plateau, cosine or linear, got {cfg.lr_schedule!r}"),
        (cfg.plateau_patience >= 1, f"plateau_patience must be >= 1 evaluation, got {cfg.plateau_patience}"),
        (cfg.plateau_threshold >= 0, f"plateau_threshold must be >= 0, got {cfg.plateau_threshold}"),
        (cfg.loader in ("memory", "stream"), f"loader must be memory or stream, got {cfg.loader!r}"),
        (cfg.data_on_device in ("auto", "on", "off"), f"data_on_device must be auto, on or off, got "
                                                       f"{cfg.data_on_device!r}"),
        (cfg.workers >= 0, f"workers must be >= 0, got {cfg.workers}"),
        (cfg.crop_size > 0, f"crop_size must be positive, got {cfg.crop_size}"),
        (len(cfg.scale_range) == 2 and cfg.crop_size <= cfg.scale_range[0] <= cfg.scale_range[1],
         f"scale_range must be two sides lo,hi with crop_size ({cfg.crop_size}) <= lo <= hi, got "
         f"{list(cfg.scale_range)}"),
        (cfg.lighting >= 0, f"lighting must be >= 0, got {cfg.lighting}"),
        (cfg.mean_images >= 1, f"mean_images must be >= 1, got {cfg.mean_images}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def resolve_config(recipe: str, overrides: list[str] | dict[str, Any] | None = None,
                   scale: float = 1.0, *, values: dict[str, Any] | None = None) -> TrainConfig:
    """The config of a run, resolved once: the recipe, ``scale`` on its iteration counts, typed ``values`` (a
    budget's, the command's named options), then the ``overrides`` (``--set``, taken as given: ``--scale 0.1 --set
    eval_interval=50`` evaluates every 50 iterations), validated once."""
    cfg = apply_scale(recipe_config(recipe), scale)
    _apply(cfg, values or {})
    cfg = apply_overrides(cfg, overrides or [])
    if recipe == "finetune" and not cfg.init:
        raise ConfigError("the finetune recipe starts from trained weights: pass --init NAME (a released weights "
                          "name such as resnet56, or a .safetensors file)")
    return cfg


def check_model(cfg: TrainConfig) -> None:
    """Build the model on the meta device (no memory, no compute): an unknown name or a bad model option is a
    ConfigError naming the key to change, before any data loads."""
    import torch

    from ..models import create_model

    try:
        with torch.device("meta"):
            create_model(cfg.model, **cfg.model_kwargs)
    except ResNetLabError as exc:
        raise ConfigError(f"model={cfg.model!r}: {exc}") from None
    except (TypeError, ValueError) as exc:
        keys = ", ".join(f"model.{k}={v}" for k, v in cfg.model_kwargs.items()) or "the model options"
        raise ConfigError(f"{keys} does not fit {cfg.model}: {exc} (change it with --set model.KEY=VALUE)") from None


def config_keys() -> list[tuple[str, str, str]]:
    """Every config key as ``(name, default, meaning)``, the meaning read from the comments beside (or above) the
    field in :class:`TrainConfig`'s source, so the listing cannot drift from the code."""
    import inspect

    defaults = TrainConfig().to_dict()
    notes: dict[str, str] = {}
    above: list[str] = []
    after_blank = False
    for line in inspect.getsource(TrainConfig).splitlines():
        text = line.strip()
        if not text:
            above, after_blank = [], True
            continue
        if text.startswith("#"):
            if not after_blank:  # a comment right after a blank line heads a section: it describes no one key
                above.append(text.lstrip("# "))
            continue
        after_blank = False
        name = text.split(":", 1)[0]
        if name in defaults and ":" in text:
            beside = text.split("  # ", 1)[1] if "  # " in text else ""
            notes[name] = " ".join([*above, beside]).strip()
        above = []
    return [(k, json.dumps(v), notes.get(k, "")) for k, v in defaults.items() if k not in ("recipe", "scale")]
