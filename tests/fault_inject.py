"""Run ``resnetlab`` (``python tests/fault_inject.py train ...``, also under torchrun) with fault-injection hooks.

The hooks are installed from environment variables, so a test can drive a real training process from outside
(SIGKILL at a chosen moment) without any test code in the library:

``FAULT_EVENTS=FILE``
    every hook point reached appends ``<pid> <rank> <point> <count> <detail>`` to FILE.
``FAULT_PAUSE=POINT:K``
    at the K-th time this process reaches POINT, log ``<pid> <rank> pause POINT`` and wait until FILE.release
    exists (the test kills the process meanwhile). Points:

    - ``step``: after a training iteration (detail: the iteration count)
    - ``ckpt-sha`` / ``ckpt-data``: half of a checkpoint's checksum / data temp file written and fsynced
    - ``ckpt-sha-renamed``: the checksum is in place, the checkpoint not yet written
    - ``ckpt-data-renamed``: the checkpoint is in place, older ones not yet pruned
    - ``metrics``: half a metrics.jsonl row written and flushed
``FAULT_RANK=R``
    pause only in the process of rank R (default: any).
``FAULT_INF_AT=N``
    the training loss of iteration N becomes +inf.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import torch.nn.functional as torch_functional

from resnetlab import cli
from resnetlab import io as io_mod
from resnetlab.train import checkpoint as ckpt_mod
from resnetlab.train import engine as engine_mod
from resnetlab.train import metrics as metrics_mod
from resnetlab.train import trainer as trainer_mod

EVENTS = os.environ.get("FAULT_EVENTS")
PAUSE = os.environ.get("FAULT_PAUSE", "")
PAUSE_RANK = os.environ.get("FAULT_RANK")
INF_AT = int(os.environ.get("FAULT_INF_AT", "0"))
RANK = os.environ.get("RANK", "0")
_seen: Counter[str] = Counter()


def _log(text: str) -> None:
    if EVENTS:
        with open(EVENTS, "a") as f:
            f.write(f"{os.getpid()} {RANK} {text}\n")
            f.flush()


def point(name: str, detail: object = "") -> None:
    _seen[name] += 1
    _log(f"{name} {_seen[name]} {detail}")
    want, _, k = PAUSE.partition(":")
    if name == want and _seen[name] == int(k or 1) and PAUSE_RANK in (None, RANK):
        _log(f"pause {name}")
        release = Path(f"{EVENTS}.release")
        deadline = time.monotonic() + 120
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)


_real_atomic_write = io_mod.atomic_write


def _hooked_atomic_write(path: Path, write) -> None:  # the io module's writer, as checkpoints use it
    if not path.name.startswith("checkpoint-"):
        _real_atomic_write(path, write)
        return
    kind = "ckpt-sha" if path.name.endswith(".sha256") else "ckpt-data"

    def halves(f) -> None:
        buf = io.BytesIO()
        write(buf)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        point(kind, path.name)
        f.write(data[len(data) // 2 :])

    _real_atomic_write(path, halves)
    point(f"{kind}-renamed", path.name)


def _hooked_append(self, row: dict) -> None:
    line = json.dumps(row) + "\n"
    with open(self.path, "a") as f:
        f.write(line[: len(line) // 2])
        f.flush()
        os.fsync(f.fileno())
        point("metrics", row["iter"])
        f.write(line[len(line) // 2 :])
        f.flush()
        os.fsync(f.fileno())


_real_train_step = engine_mod.Trainer.train_step


def _hooked_train_step(self, images, labels):
    out = _real_train_step(self, images, labels)
    point("step", self.iteration)
    return out


class _InfLoss:
    """``torch.nn.functional`` with a cross-entropy that returns +inf at iteration ``INF_AT``."""

    trainer: engine_mod.Trainer | None = None

    def __getattr__(self, name: str):
        return getattr(torch_functional, name)

    def cross_entropy(self, logits, target, *args, **kwargs):
        loss = torch_functional.cross_entropy(logits, target, *args, **kwargs)
        if logits.requires_grad and _InfLoss.trainer is not None and _InfLoss.trainer.iteration + 1 == INF_AT:
            loss = loss * float("inf")
        return loss


def _tracking_train_step(self, images, labels):
    _InfLoss.trainer = self
    return _hooked_train_step(self, images, labels)


def install() -> None:
    ckpt_mod.atomic_write = _hooked_atomic_write  # a checkpoint's bytes
    io_mod.atomic_write = _hooked_atomic_write  # its .sha256 (io.write_checksum)
    metrics_mod.MetricsLog.append = _hooked_append
    engine_mod.Trainer.train_step = _hooked_train_step
    if INF_AT:
        trainer_mod.F = _InfLoss()
        engine_mod.Trainer.train_step = _tracking_train_step


if __name__ == "__main__":
    install()
    _log("start")
    sys.exit(cli.main(sys.argv[1:]))
