"""Training configuration in sections (model, data, optim, schedule, eval, run, hardware): frozen typed dataclasses,
one commented line per key, resolved once from a recipe, ``--scale``, a budget and the user's overrides, validated
when built.

A key is set as ``section.key`` (``--set optim.lr=0.05``) or by its flat name (``--set lr=0.05``), the name it had
before the config had sections. Saved configs (``RUN_DIR/config.json``, and inside every checkpoint) keep the flat
names: run keys hash them (``experiments.runner.config_hash``), so every committed run stays found under its key.
``resnetlab train --resume RUN_DIR`` needs nothing else, and a checkpoint says how it was made.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ResNetLabError


class ConfigError(ResNetLabError, ValueError):
    """An unknown recipe, an unknown override key or a value of the wrong type."""


Precision = Literal["auto", "fp32", "bf16", "fp16"]
WarmupMode = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class ModelConfig:
    """What to train."""

    name: str = field(default="resnet20", metadata={"flat": "model"})  # the network (`resnetlab models` lists them)
    # e.g. {"shortcut": "B"}: --set model.shortcut=B
    options: dict[str, Any] = field(default_factory=dict, metadata={"flat": "model_kwargs"})
    init: str | None = None  # start from these weights (a released name or a file); a new head if the classes differ


@dataclass(frozen=True)
class DataConfig:
    """What to train on, and how its images are augmented."""

    # image-folder root, official CIFAR folder/tarball, or "cifar10"/"cifar100"
    source: str = field(default="cifar10", metadata={"flat": "data"})
    cache_dir: str | None = None  # downloads, extracted archives and decoded image caches (None: ~/.cache/resnetlab)
    val_size: int = 5000  # the paper's 45k/5k split (Sec. 4.2); 0 trains on all 50k
    split_seed: int = 0  # the split is fixed across training seeds: the same 5k images are always held out
    normalize: Literal["pixel", "channel"] = "pixel"  # per-pixel mean subtraction (Sec. 4.2) or mean/std
    pad: int = 4  # augmentation: pad 4, random 32x32 crop, random flip (Sec. 4.2)
    flip: bool = True  # random horizontal flips (Sec. 4.2)
    # image folders in memory: resize the shorter side to this and center-crop a square (None: images must share a
    # size, as CIFAR's do); photos of mixed sizes need it (--image-size)
    image_size: int | None = None
    skip_bad: bool = False  # skip unreadable images (each reported by path) instead of stopping
    loader: Literal["memory", "stream"] = "memory"  # memory: decode once into uint8 tensors; stream: ImageNet-scale
    workers: int = 8  # stream: DataLoader worker processes per training process (0: decode in the training process)
    crop_size: int = 224  # stream: training crop side (Sec. 3.4)
    scale_range: tuple[int, ...] = (256, 480)  # stream: shorter side resized to a random size in [lo, hi] (Sec. 3.4)
    lighting: float = 0.1  # stream: std of AlexNet's PCA colour noise ("standard color augmentation"); 0 = off
    mean_images: int = 10_000  # stream: training images sampled for the mean image / channel statistics


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser (Sec. 4.2): SGD, momentum 0.9, weight decay 1e-4, batch 128."""

    batch_size: int = 128  # global batch, over all processes (Sec. 4.2: 128)
    lr: float = 0.1  # the base learning rate (Sec. 4.2: 0.1)
    momentum: float = 0.9  # SGD momentum (Sec. 4.2)
    weight_decay: float = 1e-4  # L2 weight decay (Sec. 4.2)
    nesterov: bool = False  # Nesterov momentum (not in the paper)
    grad_accum: int = 1  # micro-batches per step (same global batch, less memory)
    # BN statistics over this many images (0: the whole per-process batch). The paper trained CIFAR on 2 GPUs,
    # so its BN saw 64 of the 128 images; one process here runs 2 micro-batches of 64 to compute the same.
    bn_batch: int = 0
    label_smoothing: float = 0.0  # not in the paper; for experiments only


@dataclass(frozen=True)
class ScheduleConfig:
    """How long, and the learning rate over time. Counts are *iterations*, not epochs (Sec. 4.2)."""

    max_iters: int = 64_000  # training iterations (Sec. 4.2: 64k)
    # step: lr divided at the milestones (Sec. 4.2); plateau: when the validation error stops improving (Sec. 3.4);
    # cosine / linear decay to 0 (not in the paper; some CIFAR budgets use them: experiments/runner.py says why)
    lr_schedule: Literal["step", "plateau", "cosine", "linear"] = "step"
    milestones: tuple[int, ...] = (32_000, 48_000)  # step: lr multiplied by lr_decay at each
    lr_decay: float = 0.1  # the factor applied at each milestone or plateau (Sec. 4.2: divided by 10)
    plateau_patience: int = 5  # plateau: evaluations without improvement before the lr drops
    plateau_threshold: float = 0.1  # plateau: percentage points of validation top-1 error that count as improvement
    # ResNet-110/1202: lr 0.01 until the training error is below 80% (about 400 iterations), then back to 0.1
    warmup: WarmupMode = "auto"  # auto: on for CIFAR depth >= 110, as the paper does
    warmup_lr: float = 0.01  # the lr during that warm-up
    warmup_until_error: float = 80.0  # percent, averaged over the last warmup_window iterations
    warmup_window: int = 20  # iterations the warm-up averages the training error over
    # Linear warm-up from lr/warmup_iters to lr over the first warmup_iters iterations (0: none; not in the paper,
    # for short budgets where deeper nets start slowly at lr 0.1), multiplying the schedule's shape
    warmup_iters: int = 0


@dataclass(frozen=True)
class EvalConfig:
    """When and how the run measures its errors."""

    # evaluate on val and test, and checkpoint, every this many iterations
    interval: int = field(default=1000, metadata={"flat": "eval_interval"})
    # also evaluate the test set (reported, never used to choose anything)
    test: bool = field(default=True, metadata={"flat": "eval_test"})
    # images per forward pass when evaluating
    batch_size: int = field(default=1000, metadata={"flat": "eval_batch_size"})
    # The recorded validation/test errors are the fp32 model's: bf16 inference changed 0.76% of the quick ResNet-56's
    # test predictions (docs, Speed), and evaluating costs about 1% of a CIFAR run.
    precision: Precision = field(default="fp32", metadata={"flat": "eval_precision"})


@dataclass(frozen=True)
class RunConfig:
    """The seed, the records a run keeps, and where its settings came from."""

    seed: int = 0  # the training seed: initialisation, batch order and augmentation
    log_interval: int = 100  # training loss/error rows in metrics.jsonl
    keep_checkpoints: int = 2  # newest checkpoints kept (older ones deleted); the final one is always kept
    tensorboard: bool = False  # also write RUN_DIR/tensorboard/ events (pip install resnetlab[tensorboard])
    recipe: str = "custom"  # the recipe the config was resolved from (set by --recipe)
    scale: float = 1.0  # already applied to the schedule's counts and the intervals; kept for the record (--scale)


@dataclass(frozen=True)
class HardwareConfig:
    """Where and how fast it computes: none of these change what a run computes, beyond precision's rounding."""

    device: str = "auto"  # auto: cuda if available, else cpu
    # auto: bf16 autocast where the hardware has bf16 units (about 1.5x fp32 on such CPUs; the docs' Speed page
    # compares its test error with fp32's), else fp32. The paper trained in fp32 (2015 predates mixed precision).
    precision: Precision = "auto"
    channels_last: bool = True  # NHWC memory layout (faster convolutions on CPUs and GPUs; same results)
    # in-memory data (CIFAR) kept on the training device, augmented there; auto: on CUDA only (same batches)
    data_on_device: Literal["auto", "on", "off"] = "auto"
    compile: bool = False  # model.compile(): keeps state-dict keys free of "_orig_mod."
    activation_checkpointing: bool = False  # recompute block activations in backward: ResNet-1202 in < 12 GB
    sync_bn: bool = False  # GPU only: PyTorch's SyncBatchNorm has no CPU kernel
    threads: int = 0  # intra-op threads; 0 lets the library choose (all cores of this process's share)


SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig,
                             "schedule": ScheduleConfig, "eval": EvalConfig, "run": RunConfig,
                             "hardware": HardwareConfig}
# Every key by its flat name: (section, name in the section). The flat names are what saved configs hold.
FLAT_KEYS: dict[str, tuple[str, str]] = {
    f.metadata.get("flat", f.name): (section, f.name)
    for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
_NOT_SETTABLE = ("recipe", "scale")  # provenance: set by --recipe and --scale only
_TUPLES = ("milestones", "scale_range")  # JSON has no tuples: lists compare equal after a round trip


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run, in sections; validated when built, never changed after.

    Build one with :func:`resolve_config` (a recipe and overrides), :meth:`from_dict` (a saved config, flat or in
    sections) or :meth:`updated` (this config with some keys changed)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        """The flat record (``config.json``, checkpoints, run keys): every key by its flat name."""
        d = {flat: getattr(getattr(self, section), name) for flat, (section, name) in FLAT_KEYS.items()}
        d["model_kwargs"] = dict(d["model_kwargs"])
        for key in _TUPLES:
            d[key] = list(d[key])
        return d

    def sections(self) -> dict[str, dict[str, Any]]:
        """The config as ``{section: {key: value}}``, as ``--set section.key`` names it."""
        flat = self.to_dict()
        out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        for key, (section, name) in FLAT_KEYS.items():
            out[section][name] = flat[key]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """A saved config: flat (``config.json``, checkpoints) or in sections (``{"optim": {"lr": 0.1}, ...}``)."""
        flat: dict[str, Any] = {}
        for key, value in d.items():
            if key in SECTIONS and isinstance(value, Mapping):
                for name, v in value.items():
                    flat[_flat_name(f"{key}.{name}", saved=True)] = v
            else:
                flat[key] = value
        unknown = sorted(set(flat) - set(FLAT_KEYS))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}: the run was made by another version of resnetlab")
        return _build(flat)

    def updated(self, values: Mapping[str, Any] | list[str]) -> TrainConfig:
        """This config with keys changed, validated: ``key=value`` strings (``--set``: ``section.key``, the flat
        name, or ``model.OPTION`` for a model option such as ``model.shortcut=B``) parsed by the key's type, or a
        mapping of the same names to typed values."""
        return _build(_set(self.to_dict(), values))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


_MODEL_KEYS = {f.name for f in dataclasses.fields(ModelConfig)}
_HINTS = {section: typing.get_type_hints(cls) for section, cls in SECTIONS.items()}  # each key's type


def _set(flat: dict[str, Any], values: Mapping[str, Any] | list[str]) -> dict[str, Any]:
    """``flat`` with ``values`` written into it by flat name (see :meth:`TrainConfig.updated`); not yet checked."""
    items = values.items() if isinstance(values, Mapping) else [_split(p) for p in values]
    for key, value in items:
        if key.startswith("model.") and key[6:] not in _MODEL_KEYS:  # a model option
            option = _model_value(value) if isinstance(value, str) else value
            flat["model_kwargs"] = {**flat["model_kwargs"], key[6:]: option}
            continue
        name = _flat_name(key)
        section, leaf = FLAT_KEYS[name]
        hint = _HINTS[section][leaf]
        flat[name] = _convert(key, value, hint) if isinstance(value, str) else _typed(value, hint)
    return flat


def _flat_name(key: str, saved: bool = False) -> str:
    """The flat name of ``key`` (``section.key`` or a flat name); an unknown key is one line with suggestions."""
    section, _, name = key.partition(".")
    if name and section in SECTIONS:
        for flat, where in FLAT_KEYS.items():
            if where == (section, name) and (saved or flat not in _NOT_SETTABLE):
                return flat
    elif key in FLAT_KEYS and (saved or key not in _NOT_SETTABLE):
        return key
    every = [f"{s}.{n}" for s, n in FLAT_KEYS.values() if n not in _NOT_SETTABLE]
    leaf = name or key
    close = [k for k in every if leaf in k.split(".")[1] or k.split(".")[1] in leaf]
    close += [k for k in every if difflib.get_close_matches(leaf, [k.split(".")[1]], cutoff=0.8)]
    close = list(dict.fromkeys(close))[:3]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"unknown config key {key!r}{hint}; `resnetlab train --keys` lists them all")


def _build(flat: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from flat names (missing keys take their defaults), values taken as their types."""
    parts: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in flat.items():
        section, name = FLAT_KEYS[key]
        hint = _HINTS[section][name]
        parts[section][name] = _typed(dict(value) if isinstance(value, Mapping) else value, hint)
    try:
        return TrainConfig(**{s: SECTIONS[s](**kw) for s, kw in parts.items()})
    except TypeError as exc:  # a value JSON cannot hold in that key (a damaged or hand-edited file)
        raise ConfigError(f"a config value has the wrong type: {exc}") from None


# --- recipes ----------------------------------------------------------------------------------------------------------
IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC-2012 training set
IMAGENET_EPOCH_ITERS = -(-IMAGENET_TRAIN_IMAGES // 256)  # 5,005 iterations of batch 256 per epoch
# Sec. 3.4: SGD batch 256, weight decay 1e-4, momentum 0.9, 60e4 iterations; scale augmentation [256, 480], 224
# crops, flips, per-pixel mean, PCA lighting. Validation = the folder's val/ tree (val_size=0), center crop, once
# an epoch. The data streams from disk (loader="stream"): ImageNet does not fit in memory.
_IMAGENET: dict[str, Any] = {
    "model.name": "resnet50", "data.source": "imagenet", "data.loader": "stream", "data.crop_size": 224,
    "data.scale_range": (256, 480), "data.lighting": 0.1, "data.normalize": "pixel", "data.val_size": 0,
    "optim.batch_size": 256, "optim.lr": 0.1, "optim.momentum": 0.9, "optim.weight_decay": 1e-4,
    "schedule.max_iters": 600_000, "eval.test": False, "eval.interval": IMAGENET_EPOCH_ITERS, "eval.batch_size": 200,
    "run.log_interval": 100,
}

# Recipes are data: section keys over the defaults above.
RECIPES: dict[str, dict[str, Any]] = {
    # Sec. 4.2: batch 128, lr 0.1 / 10 at 32k and 48k, stop at 64k, 45k/5k split, per-pixel mean, pad-crop-flip.
    "cifar10_paper": {"data.source": "cifar10", "optim.bn_batch": 64},
    # The same recipe on CIFAR-100 (Identity Mappings paper, Table 2, uses it).
    "cifar100_paper": {"data.source": "cifar100", "optim.bn_batch": 64},
    # Sec. 3.4, ImageNet: batch 256, lr 0.1 divided by 10 when the validation error plateaus, 60e4 iterations.
    "imagenet_paper": {**_IMAGENET, "schedule.lr_schedule": "plateau", "schedule.milestones": ()},
    # The fixed-milestone variant: /10 after 30 and 60 epochs of ImageNet at batch 256, in iterations.
    "imagenet_paper_steps": {**_IMAGENET, "schedule.lr_schedule": "step",
                             "schedule.milestones": (30 * IMAGENET_EPOCH_ITERS, 60 * IMAGENET_EPOCH_ITERS)},
    # Not in the paper: fine-tuning trained weights (--init, a new head where the classes differ) on one's own
    # images. A tenth of the paper's lr, decayed along a cosine over 2,000 iterations of batch 64; no validation split
    # (a small folder has few images to spare; its test/ or val/ tree is scored every 500 iterations).
    "finetune": {"optim.lr": 0.01, "schedule.lr_schedule": "cosine", "schedule.milestones": (),
                 "schedule.max_iters": 2_000, "optim.batch_size": 64, "data.val_size": 0, "eval.interval": 500,
                 "run.log_interval": 50},
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


def _recipe(name: str) -> dict[str, Any]:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose from {', '.join(sorted(RECIPES))}")
    fields = {f.metadata.get("flat", f.name): f for cls in SECTIONS.values() for f in dataclasses.fields(cls)}
    return {**{flat: _default(f) for flat, f in fields.items()}, "recipe": name,
            **{_flat_name(k, saved=True): v for k, v in RECIPES[name].items()}}


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def recipe_config(name: str) -> TrainConfig:
    return _build(_recipe(name))


def _scaled(flat: dict[str, Any], scale: float) -> dict[str, Any]:
    """``flat`` with every iteration count of the schedule multiplied by ``scale`` (the schedule keeps its shape)."""
    if not scale > 0:
        raise ConfigError(f"--scale must be positive, got {scale}")
    if scale == 1.0:
        return flat
    max_iters = max(1, round(flat["max_iters"] * scale))
    interval, log = flat["eval_interval"], flat["log_interval"]
    return {**flat,
            "milestones": tuple(max(1, round(m * scale)) for m in flat["milestones"]),
            "max_iters": max_iters,
            "warmup_iters": min(round(flat["warmup_iters"] * scale), max_iters - 1),
            "eval_interval": max(min(interval, MIN_EVAL_INTERVAL), round(interval * scale)),
            "log_interval": max(min(log, 10), round(log * scale)),  # >= 10: readable logs
            "scale": flat["scale"] * scale}


def apply_scale(cfg: TrainConfig, scale: float) -> TrainConfig:
    """Multiply every iteration count of the schedule by ``scale`` (quick runs keep the schedule's shape)."""
    return _build(_scaled(cfg.to_dict(), scale))


def evaluates_at(cfg: TrainConfig, iteration: int) -> bool:
    """Whether the run evaluates (and checkpoints) after ``iteration`` (1-based): every eval interval and at the
    end."""
    return iteration % cfg.eval.interval == 0 or iteration == cfg.schedule.max_iters


def evaluation_iterations(cfg: TrainConfig) -> list[int]:
    """Every iteration after which the run evaluates (and checkpoints)."""
    last = cfg.schedule.max_iters
    return sorted({*range(cfg.eval.interval, last + 1, cfg.eval.interval), last})


def _convert(key: str, text: str, hint: Any) -> Any:
    """Parse ``text`` as the type ``hint`` of ``key``; a wrong type is a ConfigError naming the key."""
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
    if origin is dict:
        value = _model_value(text)
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a JSON object such as {{\"shortcut\": \"B\"}}, got {text!r}")
        return value
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


def _typed(value: Any, hint: Any) -> Any:
    """A value given in Python as the key's type: an int for a float key is a float (a run's key hashes the config
    as JSON, where 1 and 1.0 differ), a list for a tuple key a tuple of its items' type."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if (hint is float or float in args) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(hint) is tuple and isinstance(value, list | tuple):
        return tuple(int(v) for v in value)
    return value


def _split(pair: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {pair!r} must look like key=value (e.g. --set optim.lr=0.05)")
    return key.strip(), value.strip()


def validate(cfg: TrainConfig) -> None:
    """Every check across keys and sections, run once when a config is built (it cannot change after)."""
    d, o, s, e, r, h = cfg.data, cfg.optim, cfg.schedule, cfg.eval, cfg.run, cfg.hardware
    precisions = typing.get_args(Precision)
    checks = [
        (o.batch_size > 0, f"batch_size must be positive, got {o.batch_size}"),
        (s.max_iters > 0, f"max_iters must be positive, got {s.max_iters}"),
        (o.lr > 0, f"lr must be positive, got {o.lr}"),
        (o.grad_accum >= 1, f"grad_accum must be >= 1, got {o.grad_accum}"),
        (o.bn_batch >= 0, f"bn_batch must be >= 0 (0: the whole per-process batch), got {o.bn_batch}"),
        (e.interval > 0 and r.log_interval > 0, "eval_interval and log_interval must be positive"),
        (r.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1, got {r.keep_checkpoints}"),
        (list(s.milestones) == sorted(s.milestones), f"milestones must increase, got {list(s.milestones)}"),
        (h.precision in precisions, f"precision must be auto, fp32, bf16 or fp16, got {h.precision!r}"),
        (e.precision in precisions, f"eval_precision must be auto, fp32, bf16 or fp16, got {e.precision!r}"),
        (s.warmup in ("auto", "on", "off"), f"warmup must be auto, on or off, got {s.warmup!r}"),
        (0 < s.warmup_until_error <= 100, "warmup_until_error is a percentage in (0, 100]"),
        (0 <= s.warmup_iters < s.max_iters, f"warmup_iters must be in [0, max_iters), got {s.warmup_iters}"),
        (s.lr_schedule in ("step", "plateau", "cosine", "linear"),
         f"lr_schedule must be step, plateau, cosine or linear, got {s.lr_schedule!r}"),
        (s.plateau_patience >= 1, f"plateau_patience must be >= 1 evaluation, got {s.plateau_patience}"),
        (s.plateau_threshold >= 0, f"plateau_threshold must be >= 0, got {s.plateau_threshold}"),
        (d.loader in ("memory", "stream"), f"loader must be memory or stream, got {d.loader!r}"),
        (h.data_on_device in ("auto", "on", "off"), f"data_on_device must be auto, on or off, got "
                                                     f"{h.data_on_device!r}"),
        (d.workers >= 0, f"workers must be >= 0, got {d.workers}"),
        (d.crop_size > 0, f"crop_size must be positive, got {d.crop_size}"),
        (len(d.scale_range) == 2 and d.crop_size <= d.scale_range[0] <= d.scale_range[1],
         f"scale_range must be two sides lo,hi with crop_size ({d.crop_size}) <= lo <= hi, got "
         f"{list(d.scale_range)}"),
        (d.lighting >= 0, f"lighting must be >= 0, got {d.lighting}"),
        (d.mean_images >= 1, f"mean_images must be >= 1, got {d.mean_images}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def resolve_config(recipe: str, overrides: list[str] | Mapping[str, Any] | None = None,
                   scale: float = 1.0, *, values: Mapping[str, Any] | None = None) -> TrainConfig:
    """The config of a run, resolved once: the recipe, ``scale`` on its iteration counts, typed ``values`` (a
    budget's, the command's named options), then the ``overrides`` (``--set``, taken as given: ``--scale 0.1 --set
    eval.interval=50`` evaluates every 50 iterations). Built, and so validated, once, when every layer is in."""
    cfg = _build(_set(_set(_scaled(_recipe(recipe), scale), values or {}), overrides or []))
    if recipe == "finetune" and not cfg.model.init:
        raise ConfigError("the finetune recipe starts from trained weights: pass --init NAME (a released weights "
                          "name such as resnet56, or a .safetensors file)")
    return cfg


def check_model(cfg: TrainConfig) -> None:
    """Build the model on the meta device (no memory, no compute): an unknown name or a bad model option is a
    ConfigError naming the key to change, before any data loads."""
    import torch

    from ..models import create_model

    m = cfg.model
    try:
        with torch.device("meta"):
            create_model(m.name, **m.options)
    except ResNetLabError as exc:
        raise ConfigError(f"model={m.name!r}: {exc}") from None
    except (TypeError, ValueError) as exc:
        keys = ", ".join(f"model.{k}={v}" for k, v in m.options.items()) or "the model options"
        raise ConfigError(f"{keys} does not fit {m.name}: {exc} (change it with --set model.KEY=VALUE)") from None


def config_keys() -> list[tuple[str, str, str]]:
    """Every key as ``(section.key, default, meaning)``, the meaning read from the comments beside (or above) the
    key in its section's source, so the listing cannot drift from the code. Flat names follow in brackets where
    they differ from the key's name."""
    import inspect

    flat_of = {where: flat for flat, where in FLAT_KEYS.items()}
    defaults = TrainConfig().to_dict()
    rows = []
    for section, cls in SECTIONS.items():
        notes: dict[str, str] = {}
        above: list[str] = []
        for line in inspect.getsource(cls).splitlines()[1:]:
            text = line.strip()
            if not text or text.startswith('"""') or text.endswith('"""'):
                above = []
                continue
            if text.startswith("#"):
                above.append(text.lstrip("# "))
                continue
            name = text.split(":", 1)[0]
            if ":" in text and name.isidentifier():
                beside = text.split("  # ", 1)[1] if "  # " in text else ""
                notes[name] = " ".join([*above, beside]).strip()
            above = []
        for f in dataclasses.fields(cls):
            flat = flat_of[(section, f.name)]
            if flat in _NOT_SETTABLE:
                continue
            alias = f" (also: {flat})" if flat != f.name else ""
            rows.append((f"{section}.{f.name}", json.dumps(defaults[flat]), notes.get(f.name, "") + alias))
    return rows
