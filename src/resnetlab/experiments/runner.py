"""What every experiment shares: budgets, the training runs behind a figure or table, and the result files.

Runs are kept under ``RUNS_DIR/<budget>/<model>[-options]-s<seed>-<hash>/`` where the hash is of the run's resolved
config, so a table reuses the checkpoints a figure already trained (same budget, data and options give the same
folder), an interrupted experiment continues where it stopped, and a changed setup never reuses a stale run.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..data import DataBundle
from ..data.cache import atomic_write
from ..errors import ResNetLabError
from ..train import TrainConfig, fit, load_data, resolve_config
from ..train.engine import RESUMABLE_CHANGES, RunResult, resolve_precision


@dataclass(frozen=True)
class Budget:
    """How much of the paper's schedule an experiment runs (``scale`` of its 64k iterations) and how."""

    name: str
    scale: float
    overrides: dict[str, Any] = field(default_factory=dict)
    seeds: int = 1  # seeds per net in tables that report best and mean +- std


# The paper's schedule is 64k iterations, lr /10 at 32k and 48k (Sec. 4.2); budgets shrink it, keeping its shape.
BUDGETS: dict[str, Budget] = {
    # CI: a handful of iterations per net, to check the whole pipeline end to end.
    "smoke": Budget("smoke", 6 / 64_000, {"eval_interval": 3, "log_interval": 3, "batch_size": 32}, seeds=2),
    # 2 CPU cores, under 30 minutes for the degradation figure: 1,600 iterations (lr /10 at 800 and 1,200) in
    # the default precision (bf16 on CPUs with bf16 units), evaluated every 400 (an evaluation of 15k images costs
    # about 1% of a run here), where plain-56 already trains worse than plain-20 and ResNet-56 better than plain-56
    # (both by > 5 points). Not the paper's setting: the curves stop where the paper's have barely started, and BN
    # normalises over the whole batch of 128 (one pass of 128 is faster on a CPU than the paper's two BN groups of 64).
    # Its evaluations run in the training precision too (bf16 here): fp32 would add about 2 minutes to the demo, and
    # on its nets the test errors differ by 0.03 points (ResNet-56: 42.75 bf16, 42.72 fp32; README, Speed).
    "quick": Budget("quick", 1_600 / 64_000, {"eval_interval": 400, "log_interval": 50, "bn_batch": 0,
                                              "eval_precision": "auto"}, seeds=2),
    # The paper's full schedule (64k iterations); 5 seeds as for ResNet-110 in Table 6 ("best (mean +- std)").
    "paper": Budget("paper", 1.0, {}, seeds=5),
}


@dataclass(frozen=True)
class RunSpec:
    model: str
    seed: int = 0
    model_kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        opts = "".join(f"-{k}{v}" for k, v in self.model_kwargs)
        return f"{self.model}{opts}"


@dataclass
class Context:
    """Where an experiment reads its data and writes its runs and results."""

    # The recipe every run starts from and the length of its full schedule (ImageNet experiments subclass these).
    recipe: ClassVar[str] = "cifar10_paper"
    schedule_iters: ClassVar[int] = 64_000

    experiment: str
    budget: Budget
    data: str
    out: Path
    runs_dir: Path
    cache_dir: str | None = None
    overrides: list[str] = field(default_factory=list)
    progress: bool = True
    argv: Sequence[str] | None = None
    _bundle: DataBundle | None = None

    def config(self, spec: RunSpec) -> TrainConfig:
        pairs = [f"{k}={v}" for k, v in self.budget.overrides.items()]
        pairs += [f"data={self.data}", f"model={spec.model}", f"seed={spec.seed}"]
        if self.cache_dir:
            pairs.append(f"cache_dir={self.cache_dir}")
        pairs += [f"model.{k}={v}" for k, v in spec.model_kwargs]
        pairs += self.overrides
        return resolve_config(self.recipe, pairs, scale=self.budget.scale)

    def run_dir(self, spec: RunSpec) -> Path:
        return self.runs_dir / self.budget.name / f"{spec.label}-s{spec.seed}-{config_hash(self.config(spec))}"

    def bundle(self, cfg: TrainConfig) -> DataBundle:
        if self._bundle is None:
            self._bundle = load_data(cfg, progress=self.progress)
        return self._bundle

    def train(self, specs: Sequence[RunSpec]) -> list[RunRecord]:
        """Train (or reuse, or resume) every run; one line per run says which."""
        records = []
        for i, spec in enumerate(specs, 1):
            cfg = self.config(spec)
            run_dir = self.run_dir(spec)
            done = (run_dir / "summary.json").exists()
            print(f"[{i}/{len(specs)}] {spec.label} seed {spec.seed}: "
                  f"{'finished, reused' if done else 'training'} ({run_dir})", flush=True)
            result = fit(cfg, run_dir, resume="auto", data=self.bundle(cfg), progress=self.progress)
            records.append(RunRecord.from_result(spec, result))
        return records

    @property
    def command(self) -> str:
        argv = list(self.argv) if self.argv is not None else sys.argv[1:]
        return "resnetlab " + " ".join(shlex.quote(a) for a in argv)


# Settings that may differ between runs that are still "the same run": where and how fast it computes, and the
# evaluations' precision (the weights are the same). The training precision is not among them here: a bf16 run is
# not reused for an fp32 table.
_NOT_HASHED = RESUMABLE_CHANGES - {"precision", "data"}


def config_hash(cfg: TrainConfig) -> str:
    """Hash of what a run computes: the fields that differ from TrainConfig's defaults (so a new field with a default
    keeps old runs reusable), with the data's resolved path (or its name, for ``cifar10``) standing for the data."""
    defaults = TrainConfig().to_dict()
    d = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_HASHED and v != defaults[k]}
    path = Path(cfg.data).expanduser()
    d["data"] = str(path.resolve()) if path.exists() else cfg.data
    # What it computes in here: a bf16 run is not reused for an fp32 table, nor back. fp32 (the former default) is
    # left out, so runs hashed before "auto" became the default keep their folders.
    d.pop("precision", None)
    if (precision := resolve_precision(cfg.precision, cfg.device)) != "fp32":
        d["precision"] = precision
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


@dataclass
class RunRecord:
    """One finished run as results.json lists it (errors in %)."""

    model: str
    label: str
    seed: int
    iterations: int
    train_error: float | None
    val_error: float | None
    test_error: float | None
    params: int
    run_dir: str
    options: dict[str, Any]

    @classmethod
    def from_result(cls, spec: RunSpec, r: RunResult) -> RunRecord:
        return cls(spec.model, spec.label, spec.seed, r.iterations, r.train_error, r.val_error, r.test_error,
                   int(r.summary["params"]), str(r.run_dir), dict(spec.model_kwargs))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {cores} cores, {gpu}; Python {platform.python_version()}, PyTorch {torch.__version__}"


def fmt(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def write_results(ctx: Context, title: str, body_md: str, runs: Sequence[RunRecord],
                  extra: dict[str, Any] | None = None, figures: Sequence[Path] = ()) -> Path:
    """``results.md`` (tables beside the paper's numbers, with the command, budget, data and machine) and
    ``results.json`` (``{"runs": [...], ...}``) in the experiment's output folder."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    iters = ", ".join(f"{i:,}" for i in sorted({r.iterations for r in runs}))
    cfg = ctx.config(RunSpec(runs[0].model, runs[0].seed, tuple(runs[0].options.items()))) if runs else TrainConfig()
    header = [
        f"# {title}",
        "",
        f"- command: `{ctx.command}`",
        f"- budget: **{ctx.budget.name}** ({iters} iterations per run; the paper's schedule is "
        f"{ctx.schedule_iters:,})" + ("" if ctx.budget.name == "paper" else ": not the paper's setting"),
        f"- data: `{ctx.data}`" + (f"; trained on the training split less {cfg.val_size:,} held-out validation "
                                   "images" if cfg.val_size else ""),
        f"- training: recipe `{cfg.recipe}`, batch {cfg.batch_size}"
        + (f" (BN over {cfg.bn_batch})" if cfg.bn_batch else "") + f", {resolve_precision(cfg.precision, cfg.device)}"
        + (f", overrides {' '.join(ctx.overrides)}" if ctx.overrides else ""),
        f"- machine: {machine()}",
        f"- finished: {now}",
        "",
    ]
    figs = [f"![{p.stem}]({p.name})" for p in figures]
    text = "\n".join(header + figs + ([""] if figs else []) + [body_md.rstrip(), ""])
    atomic_write(ctx.out / "results.md", lambda f: f.write(text.encode()))
    payload = {
        "experiment": ctx.experiment,
        "budget": ctx.budget.name,
        "data": ctx.data,
        "command": ctx.command,
        "machine": machine(),
        "finished": now,
        "runs": [vars(r) for r in runs],
        **(extra or {}),
    }
    atomic_write(ctx.out / "results.json", lambda f: f.write(json.dumps(payload, indent=2).encode()))
    return ctx.out / "results.md"


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise ResNetLabError(f"unknown budget {name!r}; choose from {', '.join(BUDGETS)}")
    return BUDGETS[name]
