"""Releasing weights: a model card per finished run, measured from the released file itself.

``resnetlab weights release RUN_DIR... --data D`` evaluates each run's ``model.safetensors`` exactly as
``resnetlab eval --checkpoint NAME --data D`` does (fp32, the default evaluation batch, the full test set) and writes
the card into ``weights/released.json``, the registry's data. ``resnetlab weights publish --out DIR`` lays the files
out as they are uploaded to the release server (``weights.hub.DEFAULT_BASE_URL``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from . import io
from .data.known import known_data
from .errors import ResNetLabError
from .models import list_models
from .models.complexity import complexity
from .train.report import DEFAULT_EVAL_BATCH, evaluate_checkpoint
from .weights import RELEASED, WeightsEntry, list_weights, load_weights, weights_entry
from .weights.hub import REPO_ROOT

__all__ = ["CARDS_NOTE", "DEFAULT_PREFERENCE", "DEFAULT_TAG", "cards_commands", "cards_table", "make_card",
           "ordered_rows", "publish", "release_runs", "run_origin"]

DEFAULT_TAG = "cifar10_medium"
# pretrained=True (a model's "DEFAULT") loads the first of these a model has: the official pixels before the JPEG copy,
# and on each the paper's full schedule (Sec. 4.2) before Fig. 6's medium-budget run
DEFAULT_PREFERENCE = ("cifar10_paper", DEFAULT_TAG, "cifar10jpeg_paper", "cifar10jpeg_medium")


def _repo_relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        raise ResNetLabError(f"{path} is not inside the repository {REPO_ROOT}: released files are the committed "
                             "runs' own bytes") from None


def run_origin(model: str, kwargs: dict[str, Any], seed: int, budget: str = "medium", data: str = "cifar10",
               val_size: int | None = None, precision: str | None = None) -> tuple[str, str]:
    """The name's tag and the command that trained a committed run of ``runs/<data>/<budget>/``.

    The tag starts with the data's name (``cifar10`` for the official pixels, ``cifar10jpeg`` for the JPEG copy) and
    the budget. Seed 0 of option A is Fig. 6's run (the default weights of a model with no paper-length run,
    DEFAULT_PREFERENCE); other seeds come from Table 6, other shortcut options from the shortcut comparison. A run
    whose validation split is not its budget's (``val_size``) names it with ``--set``, and so does a run trained in
    fp32 (``precision``): where the CPU has bf16 units, "auto" picks bf16, which is another run."""
    shortcut = kwargs.get("shortcut", "A")
    tag = (f"{data.replace('-', '')}_{budget}" + (f"_shortcut{shortcut}" if shortcut != "A" else "")
           + (f"_seed{seed}" if seed else ""))
    flags = f"--budget {budget} --data ../shared/data/{data}"
    split = f" --set val_size={val_size}" if val_size is not None and val_size != _budget_val_size(budget) else ""
    split += " --set precision=fp32" if precision == "fp32" else ""
    if shortcut != "A":
        seeds = f" --seeds {seed + 1}" if seed else ""
        return tag, f"resnetlab reproduce shortcuts {flags} --model {model}{seeds}{split}"
    return tag, f"resnetlab reproduce {'table6' if seed else 'degradation'} {flags} --only {model}{split}"


def _budget_val_size(budget: str) -> int:
    from .experiments.runner import BUDGETS
    from .train import TrainConfig

    return int(BUDGETS[budget].overrides.get("data.val_size", TrainConfig().data.val_size))


def data_title(digest: str | None, val_size: int) -> str:
    """A card's data line: which copy of the data, and how many training images the run learned from."""
    known = known_data(digest)
    split = "45k train / 5k val split" if val_size == 5000 else (f"all training images, {val_size:,} held out"
                                                                   if val_size else "all 50k training images")
    return f"{known.title if known else 'data ' + str(digest)[:12]} ({split})"


def make_card(run_dir: Path, data: str, *, tag: str | None = None, command: str | None = None,
              progress: bool = False) -> WeightsEntry:
    """The registry entry (with its card) of the finished run in ``run_dir``, its test error measured now on
    ``data``, which must be the data the run trained on. The tag and the command default to :func:`run_origin`'s, for
    the data and budget the run's folder is in (``runs/<data>/<budget>/``)."""
    run_dir = Path(run_dir)
    path = run_dir / "model.safetensors"
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        config = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ResNetLabError(f"{run_dir} is not a finished run (summary.json/config.json: {exc})") from None
    wf = load_weights(path)  # checks the .sha256 beside it
    meta = wf.meta
    with tempfile.TemporaryDirectory() as tmp:
        report = evaluate_checkpoint(path, data, tmp, batch_size=DEFAULT_EVAL_BATCH, precision="fp32",
                                     progress=progress)
    if report.get("data_digest") not in (None, meta.get("data")):
        raise ResNetLabError(f"{run_dir} was trained on other data than {data}: a card's error is measured on the "
                             "run's own data; pass that with --data")
    kwargs = dict(meta.get("model_kwargs", {}))
    cost = complexity(meta["model"], **kwargs)
    budget, data_folder = run_dir.resolve().parent.name, run_dir.resolve().parent.parent.name  # runs/<data>/<budget>/
    origin_tag, origin_command = run_origin(meta["model"], kwargs, int(meta.get("seed") or 0), budget, data_folder,
                                            int(config.get("val_size", 5000)), summary.get("precision"))
    name = f"{meta['model']}.{tag or origin_tag}"
    card: dict[str, Any] = {
        "test_error": round(report["top1_error"], 2),
        "test_top5_error": round(report["top5_error"], 2),
        "test_images": report["images"],
        "evaluation": {"precision": "fp32", "batch_size": DEFAULT_EVAL_BATCH, "protocol": "center",
                       "command": f"resnetlab eval --checkpoint {name} --data {data}"},
        "train_error": summary.get("train_error"),  # running: the last log window's augmented batches
        "dataset": {"name": data_title(meta.get("data"), int(config.get("val_size", 5000))),
                    "digest": meta.get("data"), "classes": meta["classes"]},
        "recipe": meta.get("recipe"),
        "schedule": {k: config.get(k) for k in ("lr_schedule", "lr", "milestones", "warmup", "warmup_iters",
                                                "batch_size", "bn_batch", "weight_decay", "scale")},
        "iterations": meta.get("iterations"),
        "seed": meta.get("seed"),
        "training_precision": meta.get("precision"),
        "params": cost.params,
        "macs": cost.macs,
        "file_size": path.stat().st_size,
        "preprocessing": {"input_size": meta["input_size"], "normalize": meta.get("normalize"),
                          "mean": "the training images' per-pixel mean, in 0..255 units (stored in the file)"
                          if meta.get("normalize") == "pixel" else "per-channel mean/std (stored in the file)",
                          "inputs": "RGB, uint8 0..255 or float in [0, 1]; see Weights.transforms()"},
        "command": command or origin_command,
        "run": _repo_relative(run_dir),
    }
    if summary.get("final_train_error") is not None:  # the final model on every training image, fp32 (newer runs)
        card["final_train_error"] = summary["final_train_error"]
    return WeightsEntry(name, meta["model"], kwargs, _repo_relative(path), wf.sha256, path.stat().st_size, card)


def _row(entry: WeightsEntry) -> dict[str, Any]:
    return {"name": entry.name, "model": entry.model, "model_kwargs": entry.model_kwargs, "file": entry.file,
            "sha256": entry.sha256, "size": entry.size, "meta": entry.meta}


def ordered_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Manifest rows by model (the registry's order); within a model the DEFAULT_PREFERENCE tags first, in that
    order (the first is what pretrained=True loads), then the others as released."""
    order = {m: i for i, m in enumerate(list_models("cifar"))}

    def key(r: dict[str, Any]) -> tuple[int, int]:
        tag = r["name"].partition(".")[2]
        rank = DEFAULT_PREFERENCE.index(tag) if tag in DEFAULT_PREFERENCE else len(DEFAULT_PREFERENCE)
        return order.get(r["model"], len(order)), rank

    return sorted(rows, key=key)  # stable: the rest keep their release order


def release_runs(run_dirs: list[Path], data: str, manifest: Path = RELEASED, **card_options: Any) -> list[WeightsEntry]:
    """Add (or refresh) the cards of ``run_dirs`` in ``manifest``; entries are ordered as the registry's models."""
    rows = {r["name"]: r for r in json.loads(manifest.read_text())["weights"]} if manifest.is_file() else {}
    made = [make_card(Path(d), data, **card_options) for d in run_dirs]
    for entry in made:
        if entry.name in rows and rows[entry.name]["meta"]["run"] != entry.meta["run"]:
            raise ResNetLabError(f"{entry.name} already names the weights of {rows[entry.name]['meta']['run']}, not "
                                 f"{entry.meta['run']}: release this run under another name (--tag TAG)")
        rows[entry.name] = _row(entry)
    text = json.dumps({"weights": ordered_rows(list(rows.values()))}, indent=1) + "\n"
    io.atomic_write(manifest, lambda f: f.write(text.encode()))
    return made


CARDS_NOTE = ("Training error: the final model on every training image (un-augmented, fp32) where its run made that "
              "pass; cards made before it give the running error over the run's last augmented batches.")


def cards_table(names: list[str] | None = None) -> str:
    """The model cards as one Markdown table (`resnetlab weights`, the docs): a row per released file, with the data
    it was trained and scored on. The commands that trained them follow in :func:`cards_commands`."""
    lines = ["| weights | data | test error (%) | training error (%) | params | multiply-adds | file |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name in names if names is not None else list_weights():
        e = weights_entry(name)
        m = e.meta
        train = (f"{m['final_train_error']:.2f}" if m.get("final_train_error") is not None  # CARDS_NOTE
                 else "-" if m.get("train_error") is None else f"{m['train_error']:.2f}")
        known = known_data(m["dataset"].get("digest"))
        data = ("official pixels" if known.official else "JPEG copy") if known else "other"
        lines.append(f"| `{e.name}` | {data} | {m['test_error']:.2f} | {train} | {m['params'] / 1e6:.3f}M | "
                     f"{m['macs'] / 1e6:.1f}M | {e.size / 1e6:.2f} MB |")
    return "\n".join(lines)


def cards_commands(names: list[str] | None = None) -> str:
    """The command that trained each released file, one Markdown list item each (too long for the table's
    columns)."""
    return "\n".join(f"- `{name}`: `{weights_entry(name).meta['command']}`"
                     for name in (names if names is not None else list_weights()))


def publish(out_dir: Path) -> list[Path]:
    """Copy every released file to ``out_dir`` under its release name, with a ``SHA256SUMS`` file: the folder's
    contents are what goes to the release server. Each copy is checked against the registry first."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, sums = [], []
    for name in list_weights():
        e = weights_entry(name)
        src = REPO_ROOT / e.file
        if not src.is_file():
            raise ResNetLabError(f"{src} is missing: publish from a clone that holds the committed runs")
        data = src.read_bytes()  # hashed and written from the same read
        digest = io.sha256_hex(data)
        if digest != e.sha256:
            raise ResNetLabError(f"{src} does not match its card (SHA-256 {digest[:16]}..., card {e.sha256[:16]}...)")
        dst = out_dir / e.url_name
        io.atomic_write(dst, lambda f, data=data: f.write(data))
        written.append(dst)
        sums.append(f"{e.sha256}  {e.url_name}")
    io.atomic_write(out_dir / "SHA256SUMS", lambda f: f.write(("\n".join(sums) + "\n").encode()))
    return written
