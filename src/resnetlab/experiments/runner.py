"""What every experiment shares: budgets, the training runs behind a figure or table, and the result files.

Runs are kept under ``RUNS_DIR/<budget>/<model>[-options]-s<seed>-<hash>/`` where the hash is of the run's resolved
config and of the data's *content* (not its path), so a table reuses the runs a figure already trained (same budget,
data and options give the same folder), an interrupted experiment continues where it stopped, a changed setup never
reuses a stale run, and a clone in another folder, with the data anywhere, finds the committed runs.

A finished run is its ``summary.json`` and ``model.safetensors`` (with ``config.json`` and ``metrics.jsonl``): that
is what the repository commits for the medium budget (``runs/medium/``), and an experiment renders from those files
without its checkpoints.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import hashlib
import json
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .. import io
from ..data.known import data_name, known_data
from ..data.source import DataSource
from ..errors import ResNetLabError
from ..runfiles import WEIGHTS_NAME, list_checkpoints
from ..runtime import machine
from ..train import TrainConfig, fit, load_data, resolve_config
from ..train.config import recipe_config
from ..train.device import resolve_precision
from ..train.engine import RunResult
from ..train.resume import RESUMABLE_CHANGES, config_differences, has_run, read_run_config


@dataclass(frozen=True)
class Budget:
    """How much of the paper's schedule an experiment runs (``scale`` of its 64k iterations) and how."""

    name: str
    scale: float
    overrides: dict[str, Any] = field(default_factory=dict)  # config values by section key, over the recipe
    seeds: int = 1  # seeds per net in tables that report best and mean +- std
    more_seeds: dict[str, int] = field(default_factory=dict)  # Table 6: more seeds for these nets (model -> seeds)


# The paper's schedule is 64k iterations, lr /10 at 32k and 48k (Sec. 4.2); budgets shrink it.
BUDGETS: dict[str, Budget] = {
    # CI: a handful of iterations per net, to check the whole pipeline end to end.
    "smoke": Budget("smoke", 6 / 64_000, {"eval.interval": 3, "run.log_interval": 3, "optim.batch_size": 32}, seeds=2),
    # 2 CPU cores, under 30 minutes for the degradation figure (plain-20/32, ResNet-20/32): 2,400 iterations, the lr
    # rising linearly to 0.1 over the first 240 and then decaying along a cosine to 0, BN over the whole batch of
    # 128 (one pass of 128 is faster on a CPU than the paper's two BN groups of 64), bf16 training where the CPU has
    # it, fp32 evaluation at 1,000, 2,000 and 2,400. Not the paper's setting (Sec. 4.2: steps, no warm-up below
    # depth 110, BN over 64): chosen by measurement (docs, "How the quick budget was chosen"): deeper nets start
    # slower at lr 0.1, and the warm-up and the cosine narrow that gap most.
    "quick": Budget("quick", 2_400 / 64_000, {"schedule.lr_schedule": "cosine", "schedule.warmup_iters": 240,
                                              "run.log_interval": 50, "optim.bn_batch": 0}, seeds=2),
    # Hours on 2 CPU cores: 6,400 iterations (a tenth of the paper's), every CIFAR experiment, committed in
    # runs/<data>/medium. Not the paper's setting: the lr decays along a cosine instead of the paper's steps (Sec. 4.2),
    # because that separates the depths better on short schedules (measured at 2,000 iterations: ResNet-32 minus
    # ResNet-20 test error +1.56 points with the cosine, +4.46 with the steps; README, "How the quick budget was
    # chosen"). The rest is the paper's recipe: SGD, wd 1e-4, batch 128 with BN over 64, pad-crop-flip,
    # ResNet-110's warm-up. Trained in the default precision (bf16 where the CPU has bf16 units), evaluated in fp32
    # every 1,000 iterations. One seed per net, two for every depth in Table 6: ResNet-20 for the noise, ResNet-110
    # as the paper reports its spread, ResNet-56 because its seed 0 sat at chance for its first ~780 iterations
    # (results/cifar10-jpeg/medium-start), ResNet-32 and -44 because their steps of finding 3 were ties on one seed.
    # Each budget's noise is that of its two ResNet-20 seeds' runs (Context.noise).
    "medium": Budget("medium", 6_400 / 64_000, {"schedule.lr_schedule": "cosine", "run.log_interval": 50}, seeds=1,
                     more_seeds={"resnet20": 2, "resnet32": 2, "resnet44": 2, "resnet56": 2, "resnet110": 2}),
    # The paper's full schedule (64k iterations) on all 50k training images: the 45k/5k split only chose the schedule
    # (Sec. 4.2), and the published reproductions train the reported models on 50k. 5 seeds as for ResNet-110 in
    # Table 6 ("best (mean +- std)"). The one run on the JPEG copy held out 5k: `--set val_size=5000` finds it.
    "paper": Budget("paper", 1.0, {"data.val_size": 0}, seeds=5),
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
    out_dir: Path | None  # None: results/<data name>/<experiment>-<budget> (the data's name is known once it loads)
    runs_dir: Path
    cache_dir: str | None = None
    overrides: list[str] = field(default_factory=list)
    progress: bool = True
    argv: Sequence[str] | None = None
    train_missing: bool = True  # False (--no-train): render from the finished runs only, and list the missing ones
    only: tuple[str, ...] = ()  # --only: train just these nets (labels); the others are used only if finished
    missing: list[str] = field(default_factory=list)
    _bundle: DataSource | None = None

    def config(self, spec: RunSpec) -> TrainConfig:
        values = {**self.budget.overrides, "data.source": self.data, "model.name": spec.model, "run.seed": spec.seed}
        if self.cache_dir:
            values["data.cache_dir"] = self.cache_dir
        values.update({f"model.{k}": v for k, v in spec.model_kwargs})
        return resolve_config(self.recipe, self.overrides, scale=self.budget.scale, values=values)

    def _key_dir(self, spec: RunSpec, cfg: TrainConfig) -> Path:
        key = config_hash(cfg, data_identity(self.bundle(cfg)))
        return self.runs_dir / self.data_name / self.budget.name / f"{spec.label}-s{spec.seed}-{key}"

    def placed(self, spec: RunSpec) -> tuple[TrainConfig, Path]:
        """The config ``spec`` trains with and its run folder: the key of its config as this machine resolves it,
        unless that folder holds no finished run while the same config in the other training precision has one (a
        finished run is never trained again), or holds no run at all while the other has one unfinished in fp32
        (which resumes exactly anywhere). precision="auto" means bf16 only where the hardware has it, so a run made
        on other hardware is found rather than trained again."""
        cfg = self.config(spec)
        here = self._key_dir(spec, cfg)
        twin = precision_twin(cfg)
        if twin is None or finished_run(here, cfg) is not None:
            return cfg, here
        there = self._key_dir(spec, twin)
        if finished_run(there, twin) is not None:
            return twin, there
        if not has_run(here) and twin.hardware.precision == "fp32" and has_run(there):
            return twin, there
        return cfg, here

    def run_dir(self, spec: RunSpec) -> Path:
        return self.placed(spec)[1]

    def run_names(self, spec: RunSpec) -> set[str]:
        """The folder names of ``spec``'s run in the precision "auto" picks here and in the other one."""
        cfg = self.config(spec)
        return {self._key_dir(spec, c).name for c in (cfg, precision_twin(cfg)) if c is not None}

    def stranded(self, spec: RunSpec) -> str | None:
        """Why ``spec`` is left out here, if its only run is unfinished in bf16 and this machine has no bf16 units
        (resuming it in fp32 would not be the run its key names; emulated bf16 is about 10x slower than fp32)."""
        cfg, here = self.placed(spec)
        twin = precision_twin(cfg)
        if twin is None or twin.hardware.precision != "bf16" or has_run(here):
            return None
        there = self._key_dir(spec, twin)
        if not has_run(there):
            return None
        done = max((it for it, _ in list_checkpoints(there)), default=0)
        return (f"unfinished in bf16 at {done:,} of {twin.schedule.max_iters:,} iterations ({there}), and this machine "
                "has no bf16 units, so it is left out here: resume it on a CPU or GPU with bf16, or here with --set "
                "precision=bf16 (emulated, about 10x slower), or train it afresh in fp32 with --set precision=fp32")

    @functools.cached_property
    def data_digest(self) -> str:
        """The data's content digest (loads the data once, with the recipe's default net's config)."""
        return data_identity(self.bundle(self.config(RunSpec(recipe_config(self.recipe).model.name))))

    @property
    def data_name(self) -> str:
        """The data's folder name (``cifar10`` for the official pixels, ``cifar10-jpeg`` for the JPEG copy)."""
        return data_name(self.data_digest)

    @property
    def data_title(self) -> str:
        """The data as results name it: "CIFAR-10 (official pixels)", "CIFAR-10 JPEG copy (...)", or its digest."""
        known = known_data(self.data_digest)
        return known.title if known else f"data {self.data_name}"

    @property
    def noise(self) -> tuple[float, float] | None:
        """The budget's noise on this data: the (test, training) error spread of ResNet-20 seeds 0 and 1, in points,
        computed from their finished runs, or from their record (``noise.json`` beside the budget's runs, written
        when both finished: a budget whose runs are not committed keeps its noise there), never typed in. None until
        both have run. A margin between two nets within it is a tie, not a finding; without it a margin only has a
        direction."""
        found = self._noise_runs() or self._noise_record()
        return (float(found["noise"][0]), float(found["noise"][1])) if found is not None else None

    @property
    def noise_path(self) -> Path:
        return self.runs_dir / self.data_name / self.budget.name / "noise.json"

    def _noise_runs(self) -> dict[str, Any] | None:
        """The noise and the two runs that measure it, if both are finished here."""
        records = []
        for seed in (0, 1):
            spec = RunSpec("resnet20", seed)
            result = finished_run(self.run_dir(spec), self.config(spec))
            if result is None:
                return None
            records.append(RunRecord.from_result(spec, result))
        a, b = records
        if None in (a.test_error, b.test_error, a.judged_train_error, b.judged_train_error):
            return None
        noise = (round(abs(a.test_error - b.test_error), 2),  # type: ignore[operator]
                 round(abs(a.judged_train_error - b.judged_train_error), 2))  # type: ignore[operator]
        seeds = [{"run": Path(r.run_dir).name, "test_error": r.test_error, "train_error": r.train_error,
                  "final_train_error": r.final_train_error} for r in records]
        return {"budget": self.budget.name, "data": self.data_name, "noise": list(noise), "seeds": seeds}

    def _noise_record(self) -> dict[str, Any] | None:
        """The recorded noise, if it was measured by the runs this setup would train (the same keys)."""
        try:
            record = json.loads(self.noise_path.read_text())
        except (OSError, ValueError):
            return None
        # the runs this setup trains, in either training precision (their noise does not depend on the hardware)
        names = [self.run_names(RunSpec("resnet20", seed)) for seed in (0, 1)]
        runs = [s.get("run") for s in record.get("seeds", [])]
        return record if len(runs) == 2 and all(run in ok for run, ok in zip(runs, names, strict=True)) else None

    def record_noise(self) -> None:
        """Write ``noise.json`` when both noise runs are finished (and it says something new)."""
        measured = self._noise_runs()
        if measured is not None and measured != self._noise_record():
            text = json.dumps(measured, indent=2) + "\n"
            io.atomic_write(self.noise_path, lambda f: f.write(text.encode()))

    @property
    def out(self) -> Path:
        """Where results.md, results.json and the figures go."""
        if self.out_dir is None:
            self.out_dir = Path("results") / self.data_name / f"{self.experiment}-{self.budget.name}"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir

    def bundle(self, cfg: TrainConfig) -> DataSource:
        if self._bundle is None:
            self._bundle = load_data(cfg, progress=self.progress)
        return self._bundle

    def train(self, specs: Sequence[RunSpec]) -> list[RunRecord]:
        """Train (or reuse, or resume) every run; one line per run says which. Before any training: a net in
        ``--only`` that the experiment does not have is an error, and what will be trained is said with its cost;
        with ``--no-train``, finding no finished run at all is an error that says where it looked."""
        labels = list(dict.fromkeys(spec.label for spec in specs))
        for name in self.only:
            if name not in labels:
                close = difflib.get_close_matches(name, labels, n=3, cutoff=0.5)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise ResNetLabError(f"--only {name}: {self.experiment} has no such net; {hint}its nets: "
                                     f"{', '.join(labels)}")
        plan = [(spec, *self.placed(spec)) for spec in specs]
        finished = {run_dir: result for _, cfg, run_dir in plan if (result := finished_run(run_dir, cfg)) is not None}
        done = set(finished)
        stranded = {spec: why for spec, _, _ in plan if (why := self.stranded(spec)) is not None}
        to_train = [(spec, cfg) for spec, cfg, run_dir in plan if run_dir not in done and self.train_missing
                    and (not self.only or spec.label in self.only) and spec not in stranded]
        where = self.runs_dir / self.data_name / self.budget.name
        if not done and not to_train and stranded:
            raise ResNetLabError("; ".join(f"{spec.label} seed {spec.seed}: {why}" for spec, why in stranded.items()))
        if not done and not to_train:
            hours = sum(estimated_seconds(cfg) for _, cfg, _ in plan) / 3600
            raise ResNetLabError(
                f"no finished run of {self.experiment} at the {self.budget.name} budget on {self.data_title} was "
                f"found in {where} (resolved: {where.resolve()}); nothing is written. Run from the folder that holds "
                f"runs/ (a clone), pass --runs-dir, or drop --no-train to train its {len(plan)} runs (about "
                f"{hours:.1f} h on 2 CPU cores)")
        if to_train:
            hours = sum(estimated_seconds(cfg) for _, cfg in to_train) / 3600
            print(f"{len(done)} of {len(plan)} runs are finished in {where}; training {len(to_train)}: "
                  f"{', '.join(spec.label + f' seed {spec.seed}' for spec, _ in to_train)} (about {hours:.1f} h on "
                  "2 CPU cores; far less on a GPU)", flush=True)
        records = []
        for i, (spec, cfg, run_dir) in enumerate(plan, 1):
            result = finished.get(run_dir)
            trains = self.train_missing and (not self.only or spec.label in self.only) and spec not in stranded
            status = ("finished, reused" if result else "training" if trains else stranded.get(spec)
                      or "not trained, left out")
            where_run = "" if spec in stranded else f" ({run_dir})"  # a stranded run's line names its folder
            print(f"[{i}/{len(specs)}] {spec.label} seed {spec.seed}: {status}{where_run}", flush=True)
            if result is None and not trains:
                self.missing.append(f"{spec.label} seed {spec.seed}")
                continue
            if result is None:
                result = fit(cfg, run_dir, resume="auto", data=self.bundle(cfg), progress=self.progress)
            records.append(RunRecord.from_result(spec, result))
        self.record_noise()
        return records

    @property
    def command(self) -> str:
        argv = list(self.argv) if self.argv is not None else sys.argv[1:]
        return "resnetlab " + " ".join(shlex.quote(a) for a in argv)


# Settings that may differ between runs that are still "the same run": where and how fast it computes, and the
# evaluations' precision (the weights are the same). The training precision is not among them here: a bf16 run is
# not reused for an fp32 table.
_NOT_HASHED = RESUMABLE_CHANGES - {"precision", "data"}


# Forward multiply-adds per second while training on 2 CPU cores, by the precision the run computes in. bf16 (CPUs
# with bf16 units): ResNet-20 at about 1,250 img/s (40.6M multiply-adds an image) and ResNet-56 at about 480
# (125.5M), the docs' training table. fp32 (an AVX2 CPU without bf16 units): plain-20 at about 415 img/s.
TRAIN_MACS_PER_S = {"bf16": 5.5e10, "fp16": 5.5e10, "fp32": 1.7e10}


def computes_in(cfg: TrainConfig, evaluation: bool = False) -> str:
    """The precision ``cfg`` trains (or evaluates) in on this machine, "auto" resolved as a run of it would: what a
    run's key, its time estimate and its results text name. The run itself resolves it once (``device.place``)."""
    return resolve_precision(cfg.eval.precision if evaluation else cfg.hardware.precision, cfg.hardware.device)


def estimated_seconds(cfg: TrainConfig) -> float:
    """A rough time to train ``cfg`` on 2 CPU cores, from its multiply-adds (CIFAR-sized inputs) and the precision
    it computes in here, evaluation included (about 6% of a run)."""
    from ..models.complexity import complexity

    try:
        macs = complexity(cfg.model.name, **cfg.model.options).macs
    except (ResNetLabError, TypeError, ValueError):
        return 0.0
    rate = TRAIN_MACS_PER_S[computes_in(cfg)]
    return 1.06 * cfg.schedule.max_iters * cfg.optim.batch_size * macs / rate


def data_identity(data: DataSource) -> str:
    """What stands for the data in a run's key: the digest of its content (in-memory data) or of its file list
    (streamed folders), never its path."""
    if data.digest is None:
        raise ResNetLabError("the data has no content digest (built outside make_bundle); load it with load_data")
    return data.digest


def config_hash(cfg: TrainConfig, data_id: str) -> str:
    """Hash of what a run computes: the fields that differ from TrainConfig's defaults (so a new field with a default
    keeps old runs reusable), with the data's content digest (``data_identity``) standing for the data."""
    defaults = TrainConfig().to_dict()
    d = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_HASHED and v != defaults[k]}
    d["data"] = data_id
    # What it computes in here: a bf16 run is not reused for an fp32 table, nor back. fp32 (the former default) is
    # left out, so runs hashed before "auto" became the default keep their folders.
    d.pop("precision", None)
    if (precision := computes_in(cfg)) != "fp32":
        d["precision"] = precision
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def precision_twin(cfg: TrainConfig) -> TrainConfig | None:
    """With precision="auto": ``cfg`` pinned to the precision that "auto" does not pick on this machine (bf16 where
    it picks fp32, and back). None when the precision is pinned already."""
    if cfg.hardware.precision != "auto":
        return None
    other = "bf16" if computes_in(cfg) == "fp32" else "fp32"
    return cfg.updated({"hardware.precision": other})


def finished_run(run_dir: Path, cfg: TrainConfig) -> RunResult | None:
    """The result of a finished run of ``cfg`` in ``run_dir`` (its summary and final weights are there, and it ran
    to ``cfg.schedule.max_iters`` with the same setup), or None: it must be trained, or resumed from its checkpoints."""
    summary_path = run_dir / "summary.json"
    if not (summary_path.is_file() and (run_dir / WEIGHTS_NAME).is_file()):
        return None
    try:
        summary = json.loads(summary_path.read_text())
        saved = read_run_config(run_dir)
    except (OSError, ValueError, ResNetLabError):
        return None
    if config_differences(saved, cfg) or summary.get("iterations") != cfg.schedule.max_iters:
        return None
    return RunResult(run_dir, int(summary["iterations"]), summary.get("train_error"), summary.get("val_error"),
                     summary.get("test_error"), summary)


def run_model(run_dir: Path) -> tuple[Any, Any]:
    """A finished run's network from its ``model.safetensors`` (checked against the SHA-256 in its summary), with
    what was loaded (preprocessing in ``.mean`` / ``.std``)."""
    from ..weights import load

    summary = json.loads((run_dir / "summary.json").read_text())
    loaded = load(run_dir / WEIGHTS_NAME, sha256=summary.get("weights_sha256"))
    return loaded.model, loaded


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
    seconds: float | None = None  # training + evaluation + checkpointing, as the run recorded it (summary.json)
    # the final model's error on every training image, un-augmented, in fp32 (None: a run made before it was measured)
    final_train_error: float | None = None
    precision: str | None = None  # what it trained in, as the run recorded it
    eval_precision: str | None = None  # what its recorded errors were measured in
    machine: str | None = None  # where it trained (None: a run made before runs recorded it)

    @property
    def judged_train_error(self) -> float | None:
        """The training error that margins use: the final model's full pass where the run measured it, else the
        running error of the last log window."""
        return self.final_train_error if self.final_train_error is not None else self.train_error

    @classmethod
    def from_result(cls, spec: RunSpec, r: RunResult) -> RunRecord:
        spent = r.summary.get("seconds")
        seconds = round(sum(spent.values()), 1) if isinstance(spent, dict) else None
        return cls(spec.model, spec.label, spec.seed, r.iterations, r.train_error, r.val_error, r.test_error,
                   int(r.summary["params"]), str(r.run_dir), dict(spec.model_kwargs), seconds,
                   r.summary.get("final_train_error"), r.summary.get("precision"), r.summary.get("eval_precision"),
                   r.summary.get("machine"))


def time_summary(runs: Sequence[Any]) -> str:
    """Each run's recorded time and the total, e.g. "resnet20 s0 28 min, ...; 4.8 h in all" ("" if none is timed).
    Takes anything with ``label``, ``seed`` and ``seconds`` (RunRecords, or results.json rows via tools/readme.py)."""
    timed = [r for r in runs if r.seconds is not None]
    if not timed:
        return ""
    each = ", ".join(f"{r.label} s{r.seed} {r.seconds / 60:.0f} min" for r in timed)
    return f"{each}; {sum(r.seconds for r in timed) / 3600:.1f} h in all"


def run_times(runs: Sequence[RunRecord]) -> str:
    """One line for results.md: each run's recorded time and the total (what re-running the experiment costs)."""
    summary = time_summary(runs)
    return (f"- run time (training, evaluation and checkpoints as each run recorded them; approximate: other work "
            f"shared the cores during some runs): {summary}" if summary else "")


def verdict(margin: float, noise: float | None, decimals: int = 2) -> str:
    """A margin within the noise (the spread of two ResNet-20 seeds at the budget) is a tie, not a finding; with
    the noise not measured, a margin only has a direction ("leaning"), never "shown"."""
    margin = round(margin, decimals)  # judged as printed: the noise is a rounded figure (0.54 for a 0.5399... spread)
    if noise is None:
        return "leaning" if margin > 0 else "reversed"
    if abs(margin) <= noise:
        return "tie"
    return "shown" if margin > 0 else "reversed"


def judge(what: str, margin: float, noise: float | None, decimals: int = 2) -> dict[str, Any]:
    """One claim as results.json records it: its margin (positive in the paper's direction) and its verdict."""
    found = verdict(margin, noise, decimals)
    return {"what": what, "margin": margin, "noise": noise, "verdict": found, "holds": found == "shown"}


@dataclass
class Table:
    """A results table as data: results.md prints it as Markdown, results.json keeps it for the README and docs."""

    columns: list[str]
    rows: list[list[str]]  # cells as printed
    right: list[bool]  # right-aligned columns (numbers)

    def markdown(self) -> list[str]:
        head = "|" + "|".join("---:" if r else "---" for r in self.right) + "|"
        return ["| " + " | ".join(self.columns) + " |", head] + ["| " + " | ".join(r) + " |" for r in self.rows]

    def as_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "right": self.right}


# What a verdict means, in words (the ± is the noise: the spread of two ResNet-20 seeds at the budget).
_MEANING = {
    "shown": "shown: larger than its ±, in the paper's direction",
    "tie": "a tie: within its ±, so this budget cannot tell the two apart",
    "reversed": "reversed: larger than its ±, against the paper's direction",
    "leaning": "leaning: in the paper's direction, but its ± is not measured at this budget yet, so it is no finding",
}


def margin_text(margin: float, noise: float | None, decimals: int = 2) -> str:
    """A margin as mean ± std: the ± is the noise, the std of a margin between two runs that differ only in their
    seed (two ResNet-20 seeds' spread), or "± ?" while that is not measured."""
    return f"{margin:+.{decimals}f} ± " + ("?" if noise is None else f"{noise:.{decimals}f}")


def claim_sentence(what: str, margins: str, verdict_: str) -> str:
    """One results.md line: the claim, its margins, and what they mean in a plain sentence."""
    meaning = _MEANING[verdict_]
    if "," in margins:  # two margins (test and training): shown only when both are
        meaning = {"shown": "shown: both larger than their ±, in the paper's direction",
                   "tie": "a tie: not both beyond their ±, so this budget cannot tell the two apart",
                   "reversed": "reversed: one is larger than its ±, against the paper's direction",
                   }.get(verdict_, meaning)
    if verdict_ == "reversed" and "?" in margins:
        meaning = "reversed: against the paper's direction (its ± is not measured at this budget yet)"
    return f"- {what}: **{margins}**, {meaning}."


def margins_note(noise: str | None, unit: str = "percentage points") -> str:
    """The sentence before the claims: what a margin and its ± are (``noise`` as printed, None: not measured)."""
    spread = (f"the spread of two ResNet-20 seeds at this budget ({noise})" if noise is not None else
              "the spread of two ResNet-20 seeds at this budget, not measured yet (shown as ± ?)")
    return (f"Each margin is the paper's claim measured, in {unit}, positive in the paper's direction, as mean ± std: "
            f"the ± is {spread}, the std of a margin between two runs that differ only in their seed. A margin within "
            "its ± is a tie.")


def judged_lines(found: Sequence[dict[str, Any]], noise: str | None, decimals: int = 2,
                 unit: str = " points") -> list[str]:
    """results.md's lines for judged claims: a blank line, the note on margins, a blank line, one line each."""
    return ["", margins_note(noise, "percentage points" if unit else "the units of the table"), ""] + [
        claim_sentence(f["what"], margin_text(f["margin"], f["noise"], decimals) + unit, f["verdict"]) for f in found]


def _recorded(runs: Sequence[RunRecord], field_: str, fallback: str) -> str:
    """What the runs recorded of themselves (their precisions, their machines), or ``fallback`` for the runs that
    recorded nothing."""
    found = list(dict.fromkeys(v for r in runs if (v := getattr(r, field_)) is not None))
    unknown = [f"{r.label} s{r.seed}" for r in runs if getattr(r, field_) is None]
    if unknown and found:
        found.append(f"{fallback} ({', '.join(unknown)})")
    return "; ".join(found) if found else fallback


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
        f"- data: **{ctx.data_title}** (`{ctx.data}`)" + (
            f"; trained on the training split less {cfg.data.val_size:,} held-out validation images"
            if cfg.data.val_size else "; trained on every training image"),
        f"- training: recipe `{cfg.run.recipe}`, batch {cfg.optim.batch_size}"
        + (f" (BN over {cfg.optim.bn_batch})" if cfg.optim.bn_batch else "")
        + f", lr schedule {cfg.schedule.lr_schedule}"
        + (f" with {cfg.schedule.warmup_iters} warm-up iterations" if cfg.schedule.warmup_iters else "")
        + f", trained in {_recorded(runs, 'precision', computes_in(cfg))}"
        + (f", overrides {' '.join(ctx.overrides)}" if ctx.overrides else ""),
        f"- evaluation: every recorded validation and test error was measured in "
        f"{_recorded(runs, 'eval_precision', computes_in(cfg, evaluation=True))}",
        f"- machine: {_recorded(runs, 'machine', 'not recorded by the runs')}; this page made on {machine()}",
        *([line] if (line := run_times(runs)) else []),
        f"- finished: {now}",
        "",
    ]
    if ctx.missing:
        held = " and ".join(f"`{flag}`" for flag, on in (("--no-train", not ctx.train_missing),
                                                          ("--only", bool(ctx.only))) if on)
        header += [f"**Not trained yet, so left out:** {', '.join(ctx.missing)}. Run the same command"
                   f"{' without ' + held if held else ''} to train them (each run resumes where it stopped).", ""]
    figs = [f"![{p.stem}]({p.name})" for p in figures]
    text = "\n".join(header + figs + ([""] if figs else []) + [body_md.rstrip(), ""])
    io.atomic_write(ctx.out / "results.md", lambda f: f.write(text.encode()))
    payload = {
        "experiment": ctx.experiment,
        "budget": ctx.budget.name,
        "data": ctx.data,
        "data_name": ctx.data_name,  # runs/<data_name>/, results/<data_name>/ (data.known)
        "data_title": ctx.data_title,
        "command": ctx.command,
        "machine": machine(),  # where this page was made; each run records where it trained
        "finished": now,
        "runs": [vars(r) for r in runs],
        "missing": list(ctx.missing),
        **(extra or {}),
    }
    io.atomic_write(ctx.out / "results.json", lambda f: f.write(json.dumps(payload, indent=2).encode()))
    return ctx.out / "results.md"


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise ResNetLabError(f"unknown budget {name!r}; choose from {', '.join(BUDGETS)}")
    return BUDGETS[name]
