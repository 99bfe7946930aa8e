"""How far one training call walks through the library: the modules a `resnetlab train` enters, from the command line
to the first optimizer step, in order, with how often each is entered and every climb back up the layers.

    .venv/bin/python tools/walk.py            # a two-iteration ResNet-8 run on a tiny synthetic image folder

It traces calls with ``sys.setprofile`` (only calls into resnetlab modules count; a module is "entered" when a call
crosses into it from another module; every module is imported first, so import-time code does not count) and stops
at the first ``torch.optim.Optimizer.step``. A lambda or nested function called from a lower layer is a callback:
it is its defining module's code, not a climb. The layers, top to
bottom, are LAYERS below; a call from a module into a higher layer is a climb. Last it prints the path itself: the
resnetlab functions on the stack when the optimizer steps, from the command line down.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

# Top to bottom: a module may call down, or within its layer; a call into a higher layer is a climb.
LAYERS = [
    ("api and cli", ("resnetlab.cli", "resnetlab.__init__")),
    ("experiments and release", ("resnetlab.experiments", "resnetlab.release")),  # cards sit above evaluation
    ("train and evaluation", ("resnetlab.train", "resnetlab.predict")),
    ("weights", ("resnetlab.weights", "resnetlab.export", "resnetlab.inference")),
    ("models and data", ("resnetlab.models", "resnetlab.data", "resnetlab.figures")),
    ("base", ("resnetlab.errors", "resnetlab.runtime", "resnetlab.io", "resnetlab.runfiles")),
]


def layer(module: str) -> int:
    if module == "resnetlab":  # the package's own namespace: the public API, on top
        return 0
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return len(LAYERS)


class Walk:
    def __init__(self) -> None:
        self.order: list[str] = []  # modules in the order they are entered
        self.entries: Counter[str] = Counter()
        self.climbs: list[tuple[str, str]] = []
        self.current: str | None = None
        self.done = False
        self.path: list[tuple[str, str]] = []  # (module, function) on the stack at the first optimizer step

    @staticmethod
    def _path(frame: FrameType) -> list[tuple[str, str]]:
        """The resnetlab functions a training call goes through to reach ``frame``, outermost first."""
        out = []
        f: FrameType | None = frame
        while f is not None:
            module = f.f_globals.get("__name__", "")
            if module.startswith("resnetlab"):
                out.append((module, f.f_code.co_qualname))
            f = f.f_back
        return out[::-1]

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if self.done or event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if frame.f_code.co_name == "step" and module.startswith("torch.optim"):
            self.done = True
            self.path = self._path(frame)
            return
        if not module.startswith("resnetlab") or module == self.current:
            return
        caller = frame.f_back
        while caller is not None and not caller.f_globals.get("__name__", "").startswith("resnetlab"):
            caller = caller.f_back  # through torch or the standard library, back to the calling resnetlab module
        source = caller.f_globals["__name__"] if caller is not None else None
        if source == module:
            return
        callback = frame.f_code.co_name == "<lambda>" or "<locals>" in frame.f_code.co_qualname
        if source is not None and layer(module) < layer(source) and not callback:  # a callback is its caller's code
            self.climbs.append((source, module))
        self.current = module
        if module not in self.entries:
            self.order.append(module)
        self.entries[module] += 1


def main() -> int:
    import importlib
    import pkgutil

    import numpy as np
    from PIL import Image

    import resnetlab
    from resnetlab.cli import build_parser
    from resnetlab.cli import main as cli

    # import every module first: the walk counts calls made by a training, not the code run by imports
    for info in pkgutil.walk_packages(resnetlab.__path__, "resnetlab."):
        importlib.import_module(info.name)
    build_parser()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        rng = np.random.default_rng(0)
        for split, n in (("train", 24), ("test", 8)):
            for c in ("a", "b"):
                (root / split / c).mkdir(parents=True)
                for i in range(n):
                    pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(root / split / c / f"{i}.png")
        walk = Walk()
        sys.setprofile(walk)
        try:
            code = cli(["train", "--model", "resnet8", "--data", str(root), "--out", str(Path(tmp) / "run"),
                        "--cache-dir", str(Path(tmp) / "cache"), "--no-progress", "--set", "val_size=8",
                        "--set", "max_iters=2", "--set", "milestones=1", "--set", "batch_size=16",
                        "--set", "precision=fp32"])
        finally:
            sys.setprofile(None)
    if code != 0:
        print("the training failed", file=sys.stderr)
        return 1
    print(f"modules entered before the first optimizer step: {len(walk.order)}; entries {sum(walk.entries.values())}"
          f" (re-entries {sum(walk.entries.values()) - len(walk.order)}); climbs up the layers: {len(walk.climbs)}")
    for module in walk.order:
        print(f"  {walk.entries[module]:3d}  {LAYERS[layer(module)][0] if layer(module) < len(LAYERS) else '?':<15}"
              f"  {module}")
    for source, target in dict.fromkeys(walk.climbs):
        print(f"  climb: {source} -> {target}")
    modules = list(dict.fromkeys(m for m, _ in walk.path))
    print(f"the path from the CLI to the optimizer step: {len(walk.path)} calls in {len(modules)} modules")
    for module, function in walk.path:
        print(f"  {module}.{function}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
