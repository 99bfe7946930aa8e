"""The ``resnetlab`` command line: train, evaluate, predict, export, and regenerate the paper's figures and tables.

Exit codes: 0 success, 1 a ResNetLabError (one clear message on stderr), 2 a usage error (argparse).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ResNetLabError
from .runtime import tune_allocator

Command = Callable[[argparse.Namespace], int]


def _parse_value(text: str) -> object:
    """``--kw key=value`` values: JSON when it parses (numbers, true/false), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _model_kwargs(pairs: Sequence[str]) -> dict[str, object]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ResNetLabError(f"model option {pair!r} must look like key=value (e.g. shortcut=B)")
        out[key] = _parse_value(value)
    return out


def cmd_models(args: argparse.Namespace) -> int:
    from .models import list_models
    from .models.complexity import complexity_table

    names = list_models(args.family)
    if args.names_only:
        print("\n".join(names))
        return 0
    print(complexity_table(names))
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import release

    if args.action == "release":
        if not args.runs or not args.data:
            raise ResNetLabError("weights release needs the finished runs and --data (the data they were trained "
                                 "on): resnetlab weights release RUN_DIR... --data DIR")
        made = release.release_runs([Path(d) for d in args.runs], args.data, tag=args.tag)
        for e in made:
            print(f"{e.name}: test error {e.meta['test_error']:.2f}% ({e.meta['test_images']} images, fp32), "
                  f"sha256 {e.sha256[:16]}...")
        print(f"wrote {release.RELEASED}")
        return 0
    if args.action == "publish":
        if not args.out:
            raise ResNetLabError("weights publish needs --out DIR (the folder to upload)")
        files = release.publish(Path(args.out))
        print(f"wrote {len(files)} files and SHA256SUMS to {args.out}: upload them to the release at "
              "weights.hub.DEFAULT_BASE_URL")
        return 0
    print(release.cards_table())
    print(f"\n{release.CARDS_NOTE}")
    print("\ntrained by:")
    print(release.cards_commands())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import check_parity, export_model
    from .models import create_model, model_info
    from .weights import load_state_dict, read

    if args.checkpoint == "DEFAULT" and args.model:  # the model's default weights
        args.checkpoint = f"{args.model}.DEFAULT"
    held = read(args.checkpoint) if args.checkpoint else None
    if held is not None and held.name is not None:  # weights, a checkpoint or a converted file name their model
        if (args.model and args.model != held.name) or args.kw:
            raise ResNetLabError(f"{args.checkpoint} holds a {held.name} ({held.model_kwargs}); drop the model "
                                 "name and --kw: they are read from the checkpoint")
        model, size = held.build(), args.input_size or held.view.crop
    else:
        if not args.model:
            raise ResNetLabError("name the model to export (e.g. resnet50), or give --checkpoint of a training run")
        info = model_info(args.model)
        try:
            model = create_model(args.model, **_model_kwargs(args.kw))
        except TypeError as exc:
            raise ResNetLabError(f"bad model option for {args.model}: {exc}") from None
        if held is not None:  # a bare state dict
            load_state_dict(model, held.state_dict, source=args.checkpoint)
        size = args.input_size or info.input_size
    out = export_model(model, args.format, args.out, size)
    diff = check_parity(model, out, size, batch=3)
    print(f"wrote {out} ({args.format}); max |exported - eager| at batch 3: {diff:.2e}")
    return 0


def _train_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config values the command's named options give (``--model``, ``--data``, ...), typed."""
    keys = ("skip_bad", "image_size", "init", "cache_dir", "data", "model")
    return {key: value for key in keys if (value := getattr(args, key, None)) is not None and value is not False}


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .train import fit, resolve_config
    from .train.resume import read_run_config

    if args.keys:
        from .train.config import config_keys

        width = max(len(k) for k, _, _ in config_keys())
        for key, default, meaning in config_keys():
            print(f"{key:<{width}}  {default:<16}  {meaning}")
        return 0
    progress = not args.no_progress
    if args.resume:
        run_dir = Path(args.resume)
        if not run_dir.exists():
            raise ResNetLabError(f"cannot resume: {run_dir} does not exist (nothing is started in its place)")
        cfg = None
        values = _train_values(args)
        if values or args.set or args.scale != 1.0:
            if args.scale != 1.0:
                raise ResNetLabError("--scale cannot change a run being resumed; start a new run with --out")
            cfg = read_run_config(run_dir).updated(values).updated(args.set)
        result = fit(cfg, run_dir, resume=True, progress=progress)
    else:
        if not args.out:
            raise ResNetLabError("give --out RUN_DIR for a new run (or --resume RUN_DIR to continue one)")
        cfg = resolve_config(args.recipe, args.set, args.scale, values=_train_values(args))
        if args.init and not args.model:  # --init names the network: train that one, with its options
            from .train.init import read_init

            held = read_init(args.init)
            if held.name is not None:
                options = {k: v for k, v in held.model_kwargs.items() if k != "num_classes"}
                cfg = cfg.updated({"model.name": held.name, "model.options": {**options, **cfg.model.options}})
        result = fit(cfg, args.out, progress=progress)
    s = result.summary
    if result.run_dir is not None:
        print(f"run: {result.run_dir} ({s['iterations']} iterations)")
    for key in ("train_error", "val_error", "test_error"):
        if s.get(key) is not None:
            print(f"{key.replace('_', ' ')}: {s[key]:.2f}%")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .train.report import evaluate_checkpoint

    report = evaluate_checkpoint(args.checkpoint, args.data, args.out, cache_dir=args.cache_dir,
                                 batch_size=args.batch_size, device=args.device, precision=args.precision,
                                 progress=not args.no_progress, protocol=args.protocol, workers=args.workers,
                                 skip_bad=args.skip_bad)
    at = f" at iteration {report['iteration']}" if report["iteration"] is not None else ""
    print(f"{report['model']}{at} on {report['images']} test images of {report['data']} ({report['protocol']} test)")
    print(f"top-1 error: {report['top1_error']:.2f}%")
    print(f"top-5 error: {report['top5_error']:.2f}%")
    print("per-class accuracy:")
    for name, acc in report["per_class_accuracy"].items():
        print(f"  {name:>14s} {acc:6.2f}%")
    print(f"confusion matrix: {report['out_dir']}/confusion.png and confusion.json")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .weights.convert import convert_file

    classes = None
    if args.classes:
        classes = [line.strip() for line in Path(args.classes).read_text().splitlines() if line.strip()]
    conv = convert_file(args.source, args.input, args.output, classes)
    opts = ", ".join(f"{k}={v}" for k, v in conv.model_kwargs.items())
    print(f"wrote {args.output}: {conv.model_name} ({opts}) from a {args.source} checkpoint; use it with "
          f"`resnetlab predict|eval|export --checkpoint {args.output}`")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict_files
    from .train.device import select_device
    from .weights import load

    loaded = load(args.checkpoint)
    preds = predict_files(loaded, args.images, topk=args.topk, protocol=args.protocol, precision=args.precision,
                          device=select_device(args.device))
    if args.json:
        print(json.dumps([{"image": p.path, "top": [{"class": c, "probability": v} for c, v in p.top]}
                          for p in preds], indent=2))
        return 0
    for p in preds:
        print(p.path)
        for rank, (name, prob) in enumerate(p.top, 1):
            print(f"  {rank}. {name:<24s} {100 * prob:6.2f}%")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .experiments import reproduce

    options: dict[str, object] = {}
    if args.include:
        names = tuple(n.strip() for n in args.include.split(",") if n.strip())
        if args.experiment == "table6":
            options["include_1202"] = "resnet1202" in names
        else:
            options["include"] = names
    if args.seeds:
        options["seeds"] = args.seeds
    if args.model:
        options["model"] = args.model
    argv = args.argv if args.argv is not None else sys.argv[1:]  # recorded in results.md as the command
    try:
        out = reproduce(args.experiment, args.budget, args.data, args.out, args.runs_dir, args.cache_dir, args.set,
                        not args.no_progress, argv, train=not args.no_train,
                        only=[n.strip() for n in (args.only or "").split(",") if n.strip()], **options)
    except TypeError as exc:
        raise ResNetLabError(f"{args.experiment} does not take that option: {exc}") from None
    print(f"results: {out / 'results.md'} (table), {out / 'results.json'}; figures: "
          f"{', '.join(str(p) for p in sorted(out.glob('*.png'))) or 'none'}")
    return 0


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows every default once and keeps the examples' line breaks: an option whose help already says its
    default, a required one, a flag, or one whose default is None or empty (its help says what happens without it)
    gets no "(default: ...)" from argparse."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if ("default" in text or action.required or action.default in (None, [], argparse.SUPPRESS)
                or action.nargs == 0):
            return text
        return super()._get_help_string(action)


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _command(sub: argparse._SubParsersAction, name: str, purpose: str, examples: Sequence[str],
             description: str = "") -> argparse.ArgumentParser:
    return sub.add_parser(name, help=purpose, description=purpose + ("\n\n" + description if description else ""),
                          epilog=_examples(*examples), formatter_class=_Help)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .experiments import BUDGETS, EXPERIMENTS
    from .train.config import RECIPES
    from .train.report import DEFAULT_EVAL_BATCH

    parser = argparse.ArgumentParser(
        prog="resnetlab", formatter_class=_Help,
        description="The networks, recipes and experiments of the ResNet paper (He et al., 2015): train, evaluate, "
                    "predict, export, and regenerate the paper's figures and tables.",
        epilog=_examples("resnetlab models --family cifar",
                         "resnetlab predict --weights resnet56 photo.jpg",
                         "resnetlab train --model resnet56 --data ../shared/data/cifar10 --out runs/r56",
                         "resnetlab reproduce degradation --budget paper --data ../shared/data/cifar10 --no-train",
                         "resnetlab COMMAND --help   (each command's options and examples)"))
    parser.add_argument("--version", action="version", version=f"resnetlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "models", "list every model with its parameters and multiply-adds beside the paper's numbers",
                 ["resnetlab models", "resnetlab models --family imagenet --names-only"])
    p.add_argument("--family", choices=["cifar", "imagenet"], help="only one family (default: both)")
    p.add_argument("--names-only", action="store_true", help="print the names only")
    p.set_defaults(func=cmd_models)

    p = _command(sub, "weights", "list the released weights' cards; release finished runs; lay out files to upload",
                 ["resnetlab weights",
                  "resnetlab weights release runs/cifar10/paper/resnet20-s0-357e063c --data ../shared/data/cifar10",
                  "resnetlab weights publish --out upload/"])
    p.add_argument("action", nargs="?", choices=["list", "release", "publish"], default="list",
                   help="list: the cards as a Markdown table; release RUN_DIR...: (re)make the cards of finished "
                        "runs, measuring each file's test error; publish --out DIR: the files as uploaded")
    p.add_argument("runs", nargs="*", metavar="RUN_DIR", help="release: the finished runs")
    p.add_argument("--data", help="release: the data the runs were trained on (its test split is evaluated)")
    p.add_argument("--tag", default=None,
                   help="release: the name's tag, <model>.<tag> (default: the data and budget, e.g. cifar10_paper, "
                        "with _seedN for seeds other than 0 and _shortcutB/C for those options)")
    p.add_argument("--out", help="publish: the folder to write")
    p.set_defaults(func=cmd_weights)

    p = _command(sub, "export", "export a model to ONNX or a torch.export program, checked against eager PyTorch",
                 ["resnetlab export resnet56 --weights DEFAULT --format onnx --out resnet56.onnx",
                  "resnetlab export --checkpoint runs/r56/model.safetensors --format pt2 --out r56.pt2",
                  "resnetlab export resnet50 --format onnx --out r50.onnx --kw num_classes=100"],
                 "ONNX needs the export extra: pip install 'resnetlab[export]'.")
    p.add_argument("model", nargs="?",
                   help="a registered model name (see `resnetlab models`); read from --checkpoint if that is a "
                        "training checkpoint or a converted weights file")
    p.add_argument("--format", choices=["onnx", "pt2"], required=True, help="ONNX, or a torch.export program")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--checkpoint", "--weights", dest="checkpoint",
                   help="weights to load first: a released weights name, a model name or DEFAULT (its default "
                        "weights), a .safetensors file, a .pt state dict or a resnetlab checkpoint")
    p.add_argument("--input-size", type=int, help="input side (default: the model's training size)")
    p.add_argument("--kw", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. --kw shortcut=B --kw num_classes=100")
    p.set_defaults(func=cmd_export)

    p = _command(sub, "train", "train a model with one of the paper's recipes, or resume a run",
                 ["resnetlab train --model resnet56 --data ../shared/data/cifar10 --out runs/r56",
                  "resnetlab train --model resnet20 --data ../shared/data/cifar10 --scale 0.1 --out runs/r20-short",
                  "resnetlab train --recipe finetune --init resnet56 --data photos/ --image-size 32 --out runs/mine",
                  "resnetlab train --resume runs/r56"],
                 "recipes: " + "; ".join(f"{name} ({_recipe_summary(name)})" for name in RECIPES)
                 + ". Every config key, with its default and meaning: resnetlab train --keys.")
    p.add_argument("--model", help="a registered model name, e.g. resnet56 (default: the recipe's, resnet20)")
    p.add_argument("--data", help="image-folder root, CIFAR folder/tarball, or cifar10/cifar100 (downloaded) "
                                  "(default: the recipe's)")
    p.add_argument("--recipe", default="cifar10_paper", choices=list(RECIPES), help="named preset")
    p.add_argument("--init", metavar="NAME_OR_FILE",
                   help="start from trained weights (fine-tuning): a released weights name, a model name (its "
                        "default weights), a .safetensors file, or a checkpoint; a new head replaces the old one "
                        "when the class count differs")
    p.add_argument("--image-size", type=int, metavar="SIDE",
                   help="image folders: resize the shorter side to SIDE and center-crop SIDE x SIDE (photos of "
                        "mixed sizes need it)")
    where = p.add_mutually_exclusive_group()  # both at once is a usage error (exit 2), never a guess
    where.add_argument("--out", help="run directory (new run)")
    where.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (its config is read from it)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every iteration count of the schedule (milestones, end, intervals) by this")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set lr=0.05 --set precision=fp32 --set model.shortcut=B (the keys: "
                        "resnetlab train --keys)")
    p.add_argument("--keys", action="store_true", help="print every config key with its default and meaning, and exit")
    p.add_argument("--cache-dir", dest="cache_dir", help=CACHE_HELP)
    p.add_argument("--skip-bad", dest="skip_bad", action="store_true",
                   help="train without unreadable images (each listed, with the count) instead of stopping")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = _command(sub, "eval", "evaluate weights on a test set: top-1/top-5 error, per-class accuracy, confusion matrix",
                 ["resnetlab eval --weights resnet56 --data ../shared/data/cifar10",
                  "resnetlab eval --checkpoint runs/r56 --protocol 10crop",
                  "resnetlab eval --checkpoint runs/r56/checkpoint-0032000.pt --data ../shared/data/cifar10"])
    p.add_argument("--checkpoint", "--weights", dest="checkpoint", required=True,
                   help="a released weights name (`resnetlab weights`) or a model name (its default weights), a run "
                        "folder, a run's model.safetensors or checkpoint-NNNNNNN.pt, or a `resnetlab convert` file")
    p.add_argument("--data", help="data set (default: the one the checkpoint was trained on)")
    p.add_argument("--protocol", choices=["center", "10crop", "multiscale"], default="center",
                   help="test views (Sec. 3.4): center crop, 10-crop, or multi-scale fully convolutional")
    p.add_argument("--workers", type=int, help="decoding processes for streamed folders (default: the run's)")
    p.add_argument("--skip-bad", dest="skip_bad", action="store_true", help="skip (and list) unreadable images")
    p.add_argument("--out", help="folder for confusion.png/json (default: RUN_DIR/eval/<checkpoint>-<protocol>)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_EVAL_BATCH, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="of the inference path; fp32 by default: bf16 changed 0.76%% of a short-schedule ResNet-56's "
                        "test predictions")
    p.add_argument("--cache-dir", dest="cache_dir", help=CACHE_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval)

    p = _command(sub, "predict", "top classes (with probabilities) of image files, with the weights' own preprocessing",
                 ["resnetlab predict --weights resnet56 cat.jpg ship.png",
                  "resnetlab predict --checkpoint runs/mine/model.safetensors --topk 3 --json photos/*.jpg"])
    p.add_argument("--checkpoint", "--weights", dest="checkpoint", required=True,
                   help="a released weights name or a model name (its default weights), a .safetensors file, a "
                        "training checkpoint or a `resnetlab convert` weights file")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any size: resized as the weights say)")
    p.add_argument("--topk", type=int, default=5, help="classes to show per image")
    p.add_argument("--protocol", choices=["center", "10crop", "multiscale"], default="center",
                   help="test views (Sec. 3.4)")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="of the inference path (bf16: about 1.7x faster on CPUs with bf16 units; see eval --help)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_predict)

    p = _command(sub, "convert", "convert a torchvision or CIFAR-reference checkpoint to a resnetlab file",
                 ["resnetlab convert --from torchvision resnet50-0676ba61.pth resnet50.weights",
                  "resnetlab convert --from cifar-reference resnet56-4bfd9763.th resnet56.weights"],
                 "cifar-reference is the best-known public CIFAR ResNet reimplementation "
                 "(akamaster/pytorch_resnet_cifar10): its ResNet-20/32/44/56/110 files.")
    p.add_argument("--from", dest="source", choices=["torchvision", "cifar-reference"], required=True,
                   help="torchvision: its ImageNet ResNet .pth; cifar-reference: the {'state_dict', 'best_prec1'} "
                        "file of akamaster/pytorch_resnet_cifar10")
    p.add_argument("input", metavar="IN", help="the checkpoint to convert")
    p.add_argument("output", metavar="OUT", help="the resnetlab weights file to write")
    p.add_argument("--classes", help="text file of class names, one a line, stored in OUT (default: CIFAR-10's "
                   "names for a 10-class CIFAR net, else none stored)")
    p.set_defaults(func=cmd_convert)

    p = _command(sub, "reproduce", "regenerate one of the paper's figures or tables, training the runs it needs",
                 ["resnetlab reproduce degradation --budget quick --data ../shared/data/cifar10   (make demo)",
                  "resnetlab reproduce degradation --budget paper --data ../shared/data/cifar10 --no-train",
                  "resnetlab reproduce table6 --budget medium --data ../shared/data/cifar10-jpeg --no-train   "
                  "(the JPEG copy's runs)",
                  "resnetlab reproduce degradation --budget paper --data ../shared/data/cifar10 --only resnet20"],
                 "experiments:\n" + "\n".join(f"  {k}: {v[1]}" for k, v in EXPERIMENTS.items())
                 + "\nbudgets:\n" + "\n".join(f"  {b}: {BUDGET_HELP[b]}" for b in BUDGETS)
                 + "\nRuns are kept under RUNS_DIR/<data>/<budget>/ and reused: a finished run is never trained "
                   "again, an interrupted one resumes.")
    p.add_argument("experiment", choices=list(EXPERIMENTS), help="which figure or table")
    p.add_argument("--budget", choices=list(BUDGETS), default="quick", help="how much of the paper's schedule")
    p.add_argument("--data", default="cifar10",
                   help="image-folder root, CIFAR folder/tarball, or cifar10 (the official tarball, downloaded)")
    p.add_argument("--out", help="output folder (default: results/<data>/<experiment>-<budget>)")
    p.add_argument("--runs-dir", default=None,
                   help="where the training runs live (default: ./runs, else the committed runs of the clone "
                        "resnetlab is installed from)")
    p.add_argument("--cache-dir", dest="cache_dir", help=CACHE_HELP)
    p.add_argument("--include", help="extra nets, e.g. plain110,resnet1202 (default: none beyond the experiment's)")
    p.add_argument("--seeds", type=int, help="seeds per net (table6, shortcuts; default: the budget's)")
    p.add_argument("--model", help="the net to compare shortcut options on (shortcuts; default resnet20)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run (keys: resnetlab train --keys)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--only", metavar="NETS",
                   help="train only these nets (e.g. resnet20,plain20); the others are used if already finished")
    p.add_argument("--no-train", action="store_true",
                   help="render from the finished runs only (e.g. the committed ones); list the runs still missing")
    p.set_defaults(func=cmd_reproduce)
    return parser


CACHE_HELP = ("where downloads and decoded data are cached (default: $RESNETLAB_CACHE, else "
              "$XDG_CACHE_HOME/resnetlab, else ~/.cache/resnetlab)")
BUDGET_HELP = {
    "smoke": "a handful of iterations per net (the tests)",
    "quick": "2,400 iterations per net: the demo's four nets in 30 min (bf16 units) to 65 min (fp32) on 2 CPU cores",
    "medium": "6,400 iterations per net (a tenth of the paper's schedule): hours on 2 CPU cores",
    "paper": "the paper's full schedule, 64,000 iterations on all 50k images: per net on 2 CPU cores about 2 h "
             "(ResNet-20) to 5 h (ResNet-56) with bf16 units, 4.5 h to 12 h in fp32",
}


def _recipe_summary(name: str) -> str:
    from .train.config import RECIPE_NOTES

    return RECIPE_NOTES[name]


def _one_line_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> str:
    """Warnings on the command line are one line addressed to the user, not a source location."""
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    warnings.formatwarning = _one_line_warning
    tune_allocator()  # the library's allocator choice (runtime.py)
    try:
        return args.func(args)
    except ResNetLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
