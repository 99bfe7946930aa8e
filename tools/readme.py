"""Regenerate the generated blocks of the README and the documentation pages (docs/*.md) from the committed result
files and the code, so no number there is typed by hand.

    .venv/bin/python tools/readme.py           # rewrite the blocks (needs the installed package)
    .venv/bin/python tools/readme.py --check   # exit 1 and name the stale blocks (tests/test_readme.py runs it)

A block sits between ``<!-- generated: NAME (python tools/readme.py) -->`` and ``<!-- end: NAME -->``:
- ``config-keys``: every training config key with its default and meaning (``resnetlab train --keys``);
- ``headline``: the paper against this project on the official pixels, from the files git tracks under
  ``runs/cifar10/paper`` (a finished run's summary, or the newest committed checkpoint of a run still training).

The other blocks are the results made on the JPEG copy (``results/cifar10-jpeg/``, ``runs/cifar10-jpeg/``):
- ``findings``: the three findings, the paper against the demo (``degradation-quick``) and the medium budget
  (``degradation-medium``, and ``table6-medium`` where it has more seeds);
- ``noise``: the medium budget's noise, the spread of its two committed ResNet-20 seeds (``table6-medium``);
- ``medium``: Fig. 6, Table 6, Fig. 7 and the shortcut options from ``*-medium/results.json`` (tables, claims);
- ``cards``: the weights' cards table, as ``resnetlab weights`` prints it from ``weights/released.json``;
- ``paper``: where the paper-length ResNet-20 stands, from the files git tracks under ``runs/cifar10-jpeg/paper`` (a
  clone's view, not the local checkpoints of a run still training); for a finished run also the same net's medium
  seeds (``table6-medium``), its release (``weights/released.json``) and its curves (``degradation-paper``).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "cifar10-jpeg"  # the results made on the JPEG copy (an archive)
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAPER_RUNS = ROOT / "runs" / "cifar10-jpeg" / "paper"
PAPER_COMMAND = ("resnetlab reproduce degradation --budget paper --data ../shared/data/cifar10-jpeg --only resnet20 "
                 "--set val_size=5000")
OFFICIAL_RUNS = ROOT / "runs" / "cifar10" / "paper"  # the paper's recipe on the official pixels
HEADLINE_NETS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "plain20", "plain56")
# fp32: the first official run to finish trained in it, and the nets of one table compare in one arithmetic
OFFICIAL_COMMAND = ("resnetlab reproduce degradation --budget paper --data ../shared/data/cifar10 --only NET "
                    "--set precision=fp32")

# (experiment, title, figure file or None, whether its verdict lines follow its table); the order of the README's
# medium section. Fig. 6's verdicts are the findings block at the top.
MEDIUM = [
    ("degradation", "Fig. 6 (left and middle): plain and residual nets", "degradation.png", False),
    ("table6", "Table 6: ResNet test error beside the paper's", None, True),
    ("responses", "Fig. 7: the std of each 3x3 layer's response", "responses.png", True),
    ("shortcuts", "Shortcut options A / B / C on ResNet-20", None, True),
]

PAPER = {  # FACTS.md: Fig. 6 and Table 6
    1: "plain-20 < 32 < 44 < 56 in training error (Fig. 6 left)",
    2: "every depth (Fig. 6 left vs middle)",
    3: "test error 8.75 / 7.51 / 7.17 / 6.97 / 6.43 for 20 / 32 / 44 / 56 / 110 (Table 6)",
}
CLAIMS = {1: "1. a deeper plain net trains worse (degradation)", 2: "2. at the same depth the ResNet trains better",
          3: "3. a deeper ResNet is better"}


class Stale(SystemExit):
    """A result file the README is made from is missing or not in the shape this tool reads."""

    def __init__(self, what: str) -> None:
        super().__init__(f"tools/readme.py: {what}. Re-render it with `resnetlab reproduce ... --no-train`.")


def _load(experiment: str, budget: str) -> dict:
    path = RESULTS / f"{experiment}-{budget}" / "results.json"
    if not path.is_file():
        raise Stale(f"{path.relative_to(ROOT)} is missing")
    return json.loads(path.read_text())


def _net(name: str) -> str:
    return re.sub(r"^(plain|resnet)(\d+)", lambda m: ("plain-" if m[1] == "plain" else "ResNet-") + m[2], name)


def _finding_cell(findings: list[dict], number: int) -> str:
    from resnetlab.experiments.runner import margin_text

    parts = []
    for f in (f for f in findings if f["finding"] == number):
        if "nets" not in f:
            raise Stale(f"a finding names no nets (re-render its results): {f['what']!r}")
        a, b = (_net(n) for n in f["nets"])  # the margin is a's error minus b's
        margins = f"**{margin_text(f['margin'], f['noise'])}**"  # mean ± std, as results.md prints it
        if "train_margin" in f:
            margins = f"test {margins}, training **{margin_text(f['train_margin'], f['train_noise'])}**"
        parts.append(f"{a} minus {b}: {margins}, {f['verdict']}")
    return "; ".join(parts) if parts else "not run"


def _iterations(result: dict) -> str:
    counts = sorted({int(r["iterations"]) for r in result["runs"]})
    return " / ".join(f"{n:,}" for n in counts) if counts else "no runs yet"


def _run_times(result: dict) -> str:
    """Each run's recorded time and the total, in results.md's words (``runner.time_summary``)."""
    from resnetlab.experiments.runner import time_summary

    runs = [SimpleNamespace(label=r["label"], seed=r["seed"], seconds=float(r["seconds"]) if r.get("seconds") else None)
            for r in result["runs"]]
    return time_summary(runs) or "not recorded"


def noise_block() -> str:
    seeds = {int(r["seed"]): r for r in _load("table6", "medium")["runs"] if r["model"] == "resnet20"}
    if not {0, 1} <= set(seeds):
        raise Stale("results/cifar10-jpeg/table6-medium has no ResNet-20 seeds 0 and 1, the medium budget's noise")
    test = [float(seeds[s]["test_error"]) for s in (0, 1)]
    # the final models' full pass where the runs made one (the margins' measure), else their running error
    train = [float(seeds[s].get("final_train_error") or seeds[s]["train_error"]) for s in (0, 1)]
    return (f"The medium noise: ResNet-20 seeds 0 and 1 at the medium budget end at test {test[0]:.2f} / {test[1]:.2f}"
            f" and training {train[0]:.2f} / {train[1]:.2f}, a spread of {abs(test[0] - test[1]):.2f} / "
            f"{abs(train[0] - train[1]):.2f} points (`resnetlab reproduce table6 --budget medium --data "
            "../shared/data/cifar10-jpeg --only resnet20`).")


def findings_block() -> str:
    quick, medium = _load("degradation", "quick"), _load("degradation", "medium")
    kinds = {1: "training error: ", 2: "training error: ", 3: ""}
    rows = ["| finding | paper (64k iterations, official files) | quick budget ("
            f"{_iterations(quick)} iterations) | medium budget ({_iterations(medium)} iterations) |",
            "|---|---|---|---|"]
    for n in (1, 2, 3):
        rows.append(f"| {CLAIMS[n]} | {PAPER[n]} | {kinds[n]}{_finding_cell(quick['findings'], n)} | "
                    f"{kinds[n]}{_finding_cell(medium['findings'], n)}{_seeds_note(n)} |")
    return "\n".join(rows)


def _seeds_note(number: int) -> str:
    """Finding 3 at the medium budget on the mean over seeds, where Table 6 has a second seed."""
    if number != 3:
        return ""
    table = [row for row in _load("table6", "medium")["table"] if row["mean"] is not None]
    if not any(row["seeds"] > 1 for row in table):
        return ""
    means = " / ".join(f"{row['mean']:.2f}" + (f" ({row['seeds']} seeds)" if row["seeds"] > 1 else "")
                       for row in table)
    depths = " / ".join(row["model"].removeprefix("resnet") for row in table)
    return f". Table 6's mean test error over the seeds run, ResNet-{depths}: {means}"


def medium_block() -> str:
    out = []
    for experiment, title, figure, verdicts in MEDIUM:
        folder = f"results/cifar10-jpeg/{experiment}-medium"
        result = _load(experiment, "medium")
        if not result.get("tables"):
            raise Stale(f"{folder}/results.json has no tables")
        command = result["command"].replace(" --no-train", "").replace(" --no-progress", "")
        missing = result.get("missing") or []
        line = f"`{command}`. Run time, as the runs recorded it: {_run_times(result)}"
        line += f"; not trained yet: {', '.join(missing)}" if missing else ""
        out += [f"### {title}", "", line + f" ([results.md]({folder}/results.md)).", ""]
        if figure:
            out += [f"![{title}]({folder}/{figure})", ""]
        out += [*_markdown(result["tables"][0]), ""]  # the first table only
        if verdicts:
            out += [*result.get("claim_lines", []), ""]
    return "\n".join(out).rstrip()


def _markdown(table: dict) -> list[str]:
    """A results.json table as Markdown, as results.md prints it."""
    from resnetlab.experiments.runner import Table

    return Table(table["columns"], table["rows"], table["right"]).markdown()


def cards_block() -> str:
    from resnetlab.release import CARDS_NOTE, cards_commands, cards_table  # the installed package (editable)

    return cards_table().rstrip() + f"\n\n{CARDS_NOTE}\n\nTrained by:\n\n" + cards_commands()


def _tracked(folder: Path) -> list[Path]:
    """The files git tracks under ``folder``; every file on disk when this is not a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", folder.relative_to(ROOT).as_posix()], cwd=ROOT,
                             capture_output=True, check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return sorted(p for p in folder.rglob("*") if p.is_file())
    return [ROOT / f for f in out.split("\0") if f]


def paper_block() -> str:
    """The paper-length run on the JPEG copy (an archive), with its curves."""
    return _paper_runs(PAPER_RUNS, PAPER_COMMAND, "the JPEG copy, 45k training images",
                       ROOT / "results" / "cifar10-jpeg" / "degradation-paper" / "degradation.png", RESULTS)


def official_paper_block() -> str:
    """The paper-length runs on the official pixels, with their curves once rendered (``--no-train``)."""
    return _paper_runs(OFFICIAL_RUNS, OFFICIAL_COMMAND, "the official CIFAR-10, all 50k training images",
                       ROOT / "results" / "cifar10" / "degradation-paper" / "degradation.png", OFFICIAL)


def _paper_runs(runs_dir: Path, command: str, data: str, figure: Path, results: Path) -> str:
    """One line per committed paper-budget run in ``runs_dir``: its final errors, or how far it got and its last
    evaluation. ``results`` holds the same data's results, the only ones a run is compared with."""
    from resnetlab.models.specs import paper_numbers
    from resnetlab.runfiles import checkpoint_iteration
    from resnetlab.train.metrics import read_metrics

    files = _tracked(runs_dir)
    runs = sorted(p.parent for p in files if p.name == "config.json")
    if not runs:
        return f"No paper-length run is committed yet; `{command}` trains one."
    lines = []
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        paper = paper_numbers(config["model"])
        reported = f"{paper.cifar10_error:.2f}" if paper and paper.cifar10_error else None  # plain nets: curves only
        where = run.relative_to(ROOT).as_posix()
        name = f"{_net(config['model'])} seed {config['seed']}"
        steps = " and ".join(f"{m:,}" for m in config["milestones"])
        name += (f" ({config['recipe']}: lr {config['lr']:g}, {config['lr_schedule']} decay by "
                 f"{config['lr_decay']:g} at {steps}, batch {config['batch_size']}, BN over {config['bn_batch']})")
        if run / "summary.json" in files:
            s = json.loads((run / "summary.json").read_text())
            hours = sum(s["seconds"].values()) / 3600
            train = (f"training error {s['final_train_error']:.2f}% (the final model on every training image; "
                     f"{s['train_error']:.2f}% over its last augmented batches)" if "final_train_error" in s
                     else f"training error {s['train_error']:.2f}%")
            trained_in = f", trained in {s['precision']}" if s.get("precision") else ""
            lines.append(f"- {name} (`{where}`): **finished**, {s['iterations']:,} iterations{trained_in}: test "
                         f"error **{s['test_error']:.2f}%** ({_papers(reported)}), {train}; {hours:.1f} h as "
                         "the run recorded it."
                         + _after_first_step(read_metrics(run / "metrics.jsonl"), config["milestones"])
                         + _medium_comparison(results, config["model"], s["test_error"])
                         + _released_as(where, s["test_error"]))
            continue
        ckpts = [it for p in files if p.parent == run and (it := checkpoint_iteration(p.name)) is not None]
        if not ckpts:
            raise Stale(f"{where} has neither a summary nor a committed checkpoint")
        at = max(ckpts)
        rows = read_metrics(run / "metrics.jsonl")
        evals = [r for r in rows if r["kind"] == "eval" and r["iter"] <= at and r.get("test_error") is not None]
        lrs = [r["lr"] for r in rows if r["kind"] == "train" and r["iter"] <= at]
        val = f", validation {evals[-1]['val_error']:.2f}%" if evals and evals[-1].get("val_error") is not None else ""
        last = (f"; its last evaluation, at iteration {evals[-1]['iter']:,} (lr {lrs[-1]:g}): test error "
                f"{evals[-1]['test_error']:.2f}%{val}") if evals and lrs else ""
        lines.append(f"- {name} (`{where}`): **unfinished**, trained in {_trained_in(run, at)}, committed at "
                     f"iteration {at:,} of {config['max_iters']:,} (its newest checkpoint){last}. "
                     f"{_papers(reported, final=True)}. The same command resumes it.")
    if figure in _tracked(figure.parent):
        md = (figure.parent / "results.md").relative_to(ROOT).as_posix()
        lines += ["", f"![The paper-length runs' curves]({figure.relative_to(ROOT).as_posix()}) ([results.md]({md}))"]
    return "\n".join([f"`{command}` ({data}):", "", *lines])


def _papers(reported: str | None, final: bool = False) -> str:
    """What the paper reports for a net: Table 6's test error, or only Fig. 1's curves (the plain nets)."""
    if reported is None:
        return "The paper shows its curves only (Fig. 1)" if final else "the paper shows its curves only, Fig. 1"
    return f"The paper's final test error: {reported}%" if final else f"the paper's: {reported}%"


def headline_block() -> str:
    """The paper against this project on the official pixels, one row per net of Table 6 and Fig. 1: the finished
    run's final errors, "running" for a run committed with its newest checkpoint, "not yet" before."""
    from resnetlab.models.specs import PUBLIC_REPRODUCTIONS, paper_numbers
    from resnetlab.runfiles import checkpoint_iteration

    files = _tracked(OFFICIAL_RUNS)
    runs: dict[str, list[Path]] = {}  # a net may have a run in each training precision (bf16, fp32)
    for config_file in sorted(p for p in files if p.name == "config.json"):
        config = json.loads(config_file.read_text())
        if config["seed"] == 0 and not config.get("model_kwargs"):
            runs.setdefault(config["model"], []).append(config_file.parent)
    public = list(PUBLIC_REPRODUCTIONS)
    links = " | ".join(f"[{n.split('/')[0]}](https://github.com/{n})" for n in public)
    rows = [f"| net | paper: test error (%) | {links} | this project: test error (%) | training error (%) |",
            "|---|---:|" + "---:|" * len(public) + "---:|---:|"]
    for model in HEADLINE_NETS:
        paper = paper_numbers(model)
        reported = f"{paper.cifar10_error:.2f}" if paper and paper.cifar10_error else "Fig. 1 (curves)"
        others = " | ".join(f"{e:.2f}" if (e := PUBLIC_REPRODUCTIONS[n]["errors"].get(model)) else "-" for n in public)
        found = runs.get(model, [])
        done = [run for run in found if run / "summary.json" in files]
        if done:
            s = json.loads((done[0] / "summary.json").read_text())
            train = s.get("final_train_error", s["train_error"])
            trained_in = f" ({s['precision']})" if s.get("precision") else ""  # bf16 or fp32: the CPU decided
            ours = f"**{s['test_error']:.2f}**{trained_in} | {train:.2f}"
        elif found:
            at = {run: max((it for p in files if p.parent == run and (it := checkpoint_iteration(p.name)) is not None),
                           default=0) for run in found}
            if len(found) == 1:
                ours = f"running ({at[found[0]]:,} of 64,000 iterations committed) | -"
            else:  # one run per training precision: how far each got
                each = ", ".join(f"{at[run]:,} in {_trained_in(run, at[run])}"
                                 for run in sorted(found, key=lambda r: -at[r]))
                ours = f"running ({each} of 64,000 iterations committed) | -"
        else:
            ours = "not yet | -"
        rows.append(f"| {_net(model)} | {reported} | {others} | {ours} |")
    return "\n".join(rows)


def _trained_in(run: Path, iteration: int) -> str:
    """The precision a committed run trains in, as its newest checkpoint records it."""
    import torch

    from resnetlab.runfiles import checkpoint_name

    try:
        return str(torch.load(run / checkpoint_name(iteration), map_location="cpu", weights_only=True)["precision"])
    except Exception:  # a checkpoint that does not load names no precision
        return "an unknown precision"


def _after_first_step(rows: list[dict], milestones: list[int]) -> str:
    """Where the test error went at the schedule's first lr step, and how much it moved after."""
    if not milestones:
        return ""
    evals = [(r["iter"], r["test_error"]) for r in rows if r["kind"] == "eval" and r.get("test_error") is not None]
    before = [e for e in evals if e[0] <= milestones[0]]
    after = [e for e in evals if e[0] > milestones[0]]
    if not before or len(after) < 2:
        return ""
    rest = [e for _, e in after[1:]]
    return (f" Its test error fell from {before[-1][1]:.2f}% at iteration {before[-1][0]:,} (the first lr step) to "
            f"{after[0][1]:.2f}% at {after[0][0]:,}, then stayed between {min(rest):.2f}% and {max(rest):.2f}% over "
            f"the {len(rest)} evaluations after.")


def _medium_comparison(results: Path, model: str, test_error: float) -> str:
    """The same net at the medium budget on the same data (Table 6's mean over its seeds), to show what the full
    schedule adds; nothing where that data has no medium-budget Table 6."""
    if not (results / "table6-medium" / "results.json").is_file():
        return ""
    table = json.loads((results / "table6-medium" / "results.json").read_text())["table"]
    row = next((r for r in table if r["model"] == model and r["mean"] is not None), None)
    if row is None:
        return ""
    return (f" At the medium budget (a tenth of this schedule, cosine decay) the same net ends at {row['mean']:.2f}% "
            f"mean test error over {row['seeds']} seed{'s' * (row['seeds'] > 1)}: the full schedule is "
            f"{row['mean'] - test_error:.2f} points better.")


def _released_as(run: str, test_error: float) -> str:
    """The released weights made from this run, whether ``pretrained=True`` loads them, and the released file's own
    test error where it differs from the run's last evaluation."""
    from resnetlab.weights import list_weights, weights_entry

    names = [n for n in list_weights() if weights_entry(n).meta.get("run") == run]
    if not names:
        return ""
    model = weights_entry(names[0]).model
    default = weights_entry("DEFAULT", model).name in names
    scored = weights_entry(names[0]).meta.get("test_error")
    again = (f" Scored again from the released file, it gives {scored:.2f}%: the file keeps its "
             "weights in float16 and is scored with batch norm folded into the convolutions, roundings that move a "
             "borderline image or two."
             if scored is not None and round(scored, 2) != round(test_error, 2) else "")
    return (f" Released as {', '.join(f'`{n}`' for n in names)}"
            + (f" (what `pretrained=True` loads for {model})" if default else "") + "." + again)


def config_keys_block() -> str:
    """Every config key with its default and meaning, from the config class itself (``train --keys``)."""
    from resnetlab.train.config import config_keys

    rows = ["| key | default | meaning |", "|---|---|---|"]
    rows += [f"| `{key}` | `{default}` | {meaning.replace('|', '/')} |" for key, default, meaning in config_keys()]
    return "\n".join(rows)


OFFICIAL = ROOT / "results" / "cifar10"  # the results made on the official CIFAR-10


def demo_block() -> str:
    """`make demo` on the official CIFAR-10: its table, its margins against the quick budget's measured noise, and
    the two ResNet-20 seeds that measured it (``runs/cifar10/quick/noise.json``)."""
    folder = OFFICIAL / "degradation-quick"
    if not (folder / "results.json").is_file():
        raise Stale(f"{(folder / 'results.json').relative_to(ROOT)} is missing")
    result = json.loads((folder / "results.json").read_text())
    command = result["command"].replace(" --no-train", "").replace(" --no-progress", "")
    rel = folder.relative_to(ROOT)
    out = [f"`{command}` (`make demo`). Run time, as the runs recorded it: {_run_times(result)} "
           f"([results.md]({rel}/results.md)).", "", f"![Fig. 1/6 at the quick budget]({rel}/degradation.png)", "",
           *_markdown(result["tables"][0]), "", *result.get("claim_lines", [])]
    noise_file = ROOT / "runs" / "cifar10" / "quick" / "noise.json"
    if noise_file.is_file():
        record = json.loads(noise_file.read_text())
        test = [f"{s['test_error']:.2f}" for s in record["seeds"]]
        train = [f"{s['final_train_error']:.2f}" for s in record["seeds"]]
        out += ["", f"The quick budget's noise on this data: ResNet-20 seeds 0 and 1 end at test {' / '.join(test)} "
                f"and training {' / '.join(train)} (the final models on every training image), a spread of "
                f"{record['noise'][0]:.2f} / {record['noise'][1]:.2f} points (`resnetlab reproduce table6 --budget "
                "quick --data ../shared/data/cifar10 --only resnet20 --seeds 2`; recorded in "
                "`runs/cifar10/quick/noise.json`)."]
    return "\n".join(out).rstrip()


BLOCKS: dict[str, Callable[[], str]] = {
    "config-keys": config_keys_block, "headline": headline_block, "findings": findings_block, "noise": noise_block,
    "medium": medium_block, "cards": cards_block, "paper": paper_block, "official-paper": official_paper_block,
    "demo": demo_block,
}


def render(text: str) -> tuple[str, list[str]]:
    """``text`` with every block it holds regenerated, and the names of the blocks that changed."""
    changed = []
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- generated: {name} \(python tools/readme.py\) -->\n)(.*?)(\n<!-- end: {name} -->)",
                             re.S)
        match = pattern.search(text)
        if match is None:
            continue
        new = make()
        if match[2] != new:
            changed.append(name)
            text = text[:match.start(2)] + new + text[match.end(2):]
    return text, changed


def pages() -> list[Path]:
    """The files that hold blocks: the README and the documentation site's pages."""
    return [README, *sorted(DOCS.glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale blocks (exit 1 if any)")
    args = parser.parse_args(argv)
    found: set[str] = set()
    stale = []
    for page in pages():
        text = page.read_text()
        found |= {name for name in BLOCKS if f"<!-- generated: {name} " in text}
        text, changed = render(text)
        if not changed:
            continue
        stale.append(f"{page.name} is stale in: {', '.join(changed)}")
        if not args.check:
            tmp = page.with_suffix(".md.tmp")
            tmp.write_text(text)
            tmp.replace(page)
    missing = sorted(set(BLOCKS) - found)
    if missing:
        raise SystemExit(f"no page holds the block(s) {', '.join(missing)}: add their two marker lines (see "
                         "tools/readme.py)")
    if args.check:
        if stale:
            print(". ".join(stale) + ". Run `python tools/readme.py`.")
            return 1
        return 0
    print(f"regenerated: {'; '.join(stale) or 'nothing (up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
