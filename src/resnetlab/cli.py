"""The ``resnetlab`` command: a thin wrapper over the library's functions.

Exit codes: 0 success, 1 a ResNetLabError (one clear message on stderr), 2 a usage error (argparse).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence

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
              "pretrained.DEFAULT_BASE_URL")
        return 0
    print(release.cards_table())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import check_parity, export_model
    from .interop import load_model_file, model_file_kind
    from .models import create_model, model_info
    from .models.weights import load_state_dict, read_state_dict

    if args.checkpoint and model_file_kind(args.checkpoint):  # a training checkpoint / converted file names its model
        loaded = load_model_file(args.checkpoint)
        if (args.model and args.model != loaded.name) or args.kw:
            raise ResNetLabError(f"{args.checkpoint} holds a {loaded.name} ({loaded.model_kwargs}); drop the model "
                                 "name and --kw: they are read from the checkpoint")
        model, size = loaded.model, args.input_size or loaded.view.crop
    else:
        if not args.model:
            raise ResNetLabError("name the model to export (e.g. resnet50), or give --checkpoint of a training run")
        info = model_info(args.model)
        try:
            model = create_model(args.model, **_model_kwargs(args.kw))
        except TypeError as exc:
            raise ResNetLabError(f"bad model option for {args.model}: {exc}") from None
        if args.checkpoint:
            load_state_dict(model, read_state_dict(args.checkpoint), source=args.checkpoint)
        size = args.input_size or info.input_size
    out = export_model(model, args.format, args.out, size)
    diff = check_parity(model, out, size, batch=3)
    print(f"wrote {out} ({args.format}); max |exported - eager| at batch 3: {diff:.2e}")
    return 0


def _train_overrides(args: argparse.Namespace) -> list[str]:
    pairs = list(args.set)
    for key in ("model", "data", "cache_dir", "init"):
        value = getattr(args, key)
        if value is not None:
            pairs.insert(0, f"{key}={value}")
    if getattr(args, "skip_bad", False):
        pairs.insert(0, "skip_bad=true")
    return pairs


def cmd_train(args: argparse.Namespace) -> int:
    import copy
    from pathlib import Path

    from .train import apply_overrides, fit, resolve_config
    from .train.resume import read_run_config

    progress = not args.no_progress
    if args.resume:
        run_dir = Path(args.resume)
        if not run_dir.exists():
            raise ResNetLabError(f"cannot resume: {run_dir} does not exist (nothing is started in its place)")
        cfg = None
        pairs = _train_overrides(args)
        if pairs or args.scale != 1.0:
            if args.scale != 1.0:
                raise ResNetLabError("--scale cannot change a run being resumed; start a new run with --out")
            cfg = apply_overrides(copy.deepcopy(read_run_config(run_dir)), pairs)
        result = fit(cfg, run_dir, resume=True, progress=progress)
    else:
        if not args.out:
            raise ResNetLabError("give --out RUN_DIR for a new run (or --resume RUN_DIR to continue one)")
        cfg = resolve_config(args.recipe, _train_overrides(args), args.scale)
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

    from .interop import convert_file

    classes = None
    if args.classes:
        classes = [line.strip() for line in Path(args.classes).read_text().splitlines() if line.strip()]
    conv = convert_file(args.source, args.input, args.output, classes)
    opts = ", ".join(f"{k}={v}" for k, v in conv.model_kwargs.items())
    print(f"wrote {args.output}: {conv.model_name} ({opts}) from a {args.source} checkpoint; use it with "
          f"`resnetlab predict|eval|export --checkpoint {args.output}`")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .interop import load_model_file
    from .predict import predict_files
    from .train.device import select_device

    loaded = load_model_file(args.checkpoint)
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


def build_parser() -> argparse.ArgumentParser:
    from .train.report import DEFAULT_EVAL_BATCH

    parser = argparse.ArgumentParser(prog="resnetlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="table of every model: parameters and multiply-adds beside the paper's printed "
                                      "numbers and exact reference counts")
    p.add_argument("--family", choices=["cifar", "imagenet"], help="only one family")
    p.add_argument("--names-only", action="store_true", help="print the names only")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("weights", help="the released weights: model cards (list), release runs, publish files")
    p.add_argument("action", nargs="?", choices=["list", "release", "publish"], default="list",
                   help="list: the cards as a Markdown table; release RUN_DIR...: (re)make the cards of finished "
                        "runs, measuring each file's test error; publish --out DIR: the files as uploaded")
    p.add_argument("runs", nargs="*", metavar="RUN_DIR", help="release: the finished runs")
    p.add_argument("--data", help="release: the data the runs were trained on (its test split is evaluated)")
    p.add_argument("--tag", default=None,
                   help="release: the name's tag (<model>.<tag>; default cifar10jpeg_medium, with _seedN for "
                        "seeds other than 0 and _shortcutB/C for those options)")
    p.add_argument("--out", help="publish: the folder to write")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("export", help="export a model to ONNX or a torch.export program, checked against eager")
    p.add_argument("model", nargs="?",
                   help="a registered model name (see `resnetlab models`); read from --checkpoint if that is a "
                        "training checkpoint or a converted weights file")
    p.add_argument("--format", choices=["onnx", "pt2"], required=True)
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--checkpoint", "--weights", dest="checkpoint",
                   help="weights to load first: a released weights name, a .safetensors file, a .pt state dict or a "
                        "resnetlab checkpoint")
    p.add_argument("--input-size", type=int, help="input side (default: the model's training size)")
    p.add_argument("--kw", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. --kw shortcut=B --kw num_classes=100")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("train", help="train a model with one of the paper's recipes (or resume a run)")
    p.add_argument("--model", help="a registered model name, e.g. resnet56 (default: the recipe's, resnet20)")
    p.add_argument("--data", help="image-folder root, CIFAR folder/tarball, or cifar10/cifar100 (downloaded)")
    p.add_argument("--recipe", default="cifar10_paper", help="named preset (default cifar10_paper)")
    p.add_argument("--init", metavar="NAME_OR_FILE",
                   help="start from trained weights (fine-tuning): a released weights name, a .safetensors file, or "
                        "a checkpoint; a new head replaces the old one when the class count differs")
    where = p.add_mutually_exclusive_group()  # both at once is a usage error (exit 2), never a guess
    where.add_argument("--out", help="run directory (new run)")
    where.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (its config is read from it)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every iteration count of the schedule (milestones, end, intervals) by this")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set lr=0.05 --set precision=fp32 --set model.shortcut=B")
    p.add_argument("--cache-dir", dest="cache_dir", help="where downloads and decoded data are cached")
    p.add_argument("--skip-bad", dest="skip_bad", action="store_true",
                   help="train without unreadable images (each listed, with the count) instead of stopping")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint: top-1/top-5 error, per-class accuracy, confusion matrix")
    p.add_argument("--checkpoint", "--weights", dest="checkpoint", required=True,
                   help="a released weights name (`resnetlab weights`), a run's model.safetensors or "
                        "checkpoint-NNNNNNN.pt, or a weights file from `resnetlab convert`")
    p.add_argument("--data", help="data set (default: the one the checkpoint was trained on)")
    p.add_argument("--protocol", choices=["center", "10crop", "multiscale"], default="center",
                   help="test views (Sec. 3.4): center crop, 10-crop, or multi-scale fully convolutional")
    p.add_argument("--workers", type=int, help="decoding processes for streamed folders (default: the run's)")
    p.add_argument("--skip-bad", dest="skip_bad", action="store_true", help="skip (and list) unreadable images")
    p.add_argument("--out", help="folder for confusion.png/json (default: RUN_DIR/eval/<checkpoint>-<protocol>)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_EVAL_BATCH)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="of the inference path; fp32 by default: bf16 changed 0.76%% of a short-schedule ResNet-56's "
                        "test predictions (README, Speed)")
    p.add_argument("--cache-dir", dest="cache_dir")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="top-5 classes (with probabilities) of image files under a checkpoint")
    p.add_argument("--checkpoint", "--weights", dest="checkpoint", required=True,
                   help="a released weights name, a .safetensors file, a training checkpoint or a `resnetlab "
                        "convert` weights file")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--protocol", choices=["center", "10crop", "multiscale"], default="center")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="of the inference path (bf16: about 1.7x faster on CPUs with bf16 units; see eval --help)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("convert", help="convert a torchvision or CIFAR-reference checkpoint to a resnetlab file")
    p.add_argument("--from", dest="source", choices=["torchvision", "cifar-reference"], required=True,
                   help="torchvision: its ImageNet ResNet .pth; cifar-reference: the well-known CIFAR "
                        "reimplementation's {'state_dict', 'best_prec1'} file")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    p.add_argument("--classes", help="text file of class names, one a line, stored in OUT")
    p.set_defaults(func=cmd_convert)

    from .experiments import BUDGETS, EXPERIMENTS

    p = sub.add_parser("reproduce", help="regenerate one of the paper's figures or tables",
                       description="\n".join(f"{k}: {v[1]}" for k, v in EXPERIMENTS.items()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=list(EXPERIMENTS))
    p.add_argument("--budget", choices=list(BUDGETS), default="quick",
                   help="smoke: minutes (CI); quick: < 30 min on 2 CPU cores; medium: hours on 2 CPU cores, committed "
                        "in runs/medium; paper: the paper's full schedule")
    p.add_argument("--data", default="cifar10", help="image-folder root, CIFAR folder/tarball, or cifar10")
    p.add_argument("--out", help="output folder (default results/<experiment>-<budget>)")
    p.add_argument("--runs-dir", default="runs", help="where the training runs live (shared by experiments)")
    p.add_argument("--cache-dir", dest="cache_dir")
    p.add_argument("--include", help="extra nets, e.g. plain110,resnet1202")
    p.add_argument("--seeds", type=int, help="seeds per net (table6, shortcuts)")
    p.add_argument("--model", help="the net to compare shortcut options on (shortcuts; default resnet20)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--only", metavar="NETS",
                   help="train only these nets (e.g. resnet20,plain20); the others are used if already finished")
    p.add_argument("--no-train", action="store_true",
                   help="render from the finished runs only (e.g. the committed ones); list the runs still missing")
    p.set_defaults(func=cmd_reproduce)
    return parser


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
