"""Fault injection: nothing is lost when a run is killed, the disk fills, files rot or inputs are wrong.

Real training processes (``python -m resnetlab.cli train``, or ``tests/fault_inject.py``, which adds hook points
driven by environment variables) are SIGKILLed at seeded random moments, including inside checkpoint writes, and
resumed: every resumed run must end bit for bit where the uninterrupted one ends. In-process tests inject the
other faults (a full disk, a crash inside a save, damaged or foreign checkpoints, bad data) with monkeypatches.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnetlab import io as io_mod
from resnetlab.cli import main
from resnetlab.data import BatchLoader, DataError, DataWarning, SplitArrays, make_bundle
from resnetlab.io import checksum_path
from resnetlab.models import create_model
from resnetlab.models import resnet as resnet_mod
from resnetlab.train import CheckpointError, evaluate, fit, load_checkpoint, read_metrics, save_checkpoint
from resnetlab.train import checkpoint as ckpt_mod
from resnetlab.train import engine as engine_mod
from resnetlab.train import trainer as trainer_mod
from resnetlab.train.checkpoint import list_checkpoints
from train_utils import free_port, synthetic_arrays, tiny_bundle, tiny_config, write_image_folder

TESTS = Path(__file__).resolve().parent
INJECT = TESTS / "fault_inject.py"
PYTHON = sys.executable
HANG_GUARD_S = 120  # a process that takes longer than this is hung (the runs here take seconds)

# A short CPU run: 60 iterations, evaluated and checkpointed every 4, training rows every 3 (not a divisor of 4, so
# a resumed run must carry the half-finished logging window across the checkpoint).
KILL_SETTINGS = ["--model", "resnet8", "--no-progress", "--set", "batch_size=16", "--set", "max_iters=60",
                 "--set", "eval_interval=4", "--set", "log_interval=3", "--set", "val_size=16",
                 "--set", "milestones=40,50", "--set", "threads=1", "--set", "keep_checkpoints=2"]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS), **extra}


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "resnetlab.cli", *args], env=_env(**env), capture_output=True, text=True,
                          timeout=HANG_GUARD_S)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The synthetic 4-class image folder and a cache directory shared by this module's runs."""
    root = tmp_path_factory.mktemp("faults")
    return write_image_folder(root / "data"), root / "cache"


def _new_run_args(folder: tuple[Path, Path], run: Path, *extra: str) -> list[str]:
    data, cache = folder
    return ["train", "--data", str(data), "--cache-dir", str(cache), "--out", str(run), *KILL_SETTINGS, *extra]


@pytest.fixture(scope="module")
def reference(folder: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted 60-iteration run, by the plain CLI."""
    run = tmp_path_factory.mktemp("reference") / "run"
    proc = _cli(*_new_run_args(folder, run))
    assert proc.returncode == 0, proc.stderr
    return run


def _rows_without_timing(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in read_metrics(run / "metrics.jsonl")]


def _assert_same_run(run: Path, reference: Path, final: int = 60) -> None:
    """Final weights bit for bit, momentum too, and the same metrics rows (timing aside): nothing lost or doubled."""
    name = f"checkpoint-{final:07d}.pt"
    mine, theirs = load_checkpoint(run / name), load_checkpoint(reference / name)
    assert mine["iteration"] == final and mine["model"].keys() == theirs["model"].keys()
    for key, value in theirs["model"].items():
        assert torch.equal(mine["model"][key], value), key
    for a, b in zip(mine["optimizer"]["state"].values(), theirs["optimizer"]["state"].values(), strict=True):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    rows, expected = _rows_without_timing(run), _rows_without_timing(reference)
    assert [(r["kind"], r["iter"]) for r in rows] == [(r["kind"], r["iter"]) for r in expected]
    assert rows == expected
    assert [i for i, _ in list_checkpoints(run)] == [i for i, _ in list_checkpoints(reference)]
    assert not list(run.glob(".*.tmp")), "temp files left behind"


def _assert_consistent_after_kill(run: Path) -> None:
    """What a SIGKILL may leave: every checkpoint under its final name verifies; metrics rows never go back."""
    for _, path in list_checkpoints(run):
        load_checkpoint(path)  # complete, and its checksum matches
    for kind in ("train", "eval"):
        iters = [r["iter"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == kind]
        assert iters == sorted(set(iters)), f"duplicated {kind} rows: {iters}"


def _snapshot(run: Path) -> dict[str, bytes]:
    """Every file of a run directory (but the lock, which holds the pid of the last process that trained)."""
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file() and p.name != ".lock"}


class _Events:
    """The hook log written by fault_inject.py."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    def wait_for(self, proc: subprocess.Popen, text: str, pid: int | None = None) -> str | None:
        """Wait until a line of ``pid`` (any pid if None) containing ``text`` is logged (returned) or ``proc`` ends
        (None)."""
        deadline = time.monotonic() + HANG_GUARD_S
        while time.monotonic() < deadline:
            for line in self.lines():
                if (pid is None or line.startswith(f"{pid} ")) and text in line:
                    return line
            if proc.poll() is not None:
                return None
            time.sleep(0.01)
        raise AssertionError(f"no {text!r} event within {HANG_GUARD_S} s: hung")

    def release(self) -> None:
        Path(f"{self.path}.release").touch()


def _start(args: list[str], events: _Events, pause: str = "", **env: str) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, str(INJECT), *args], env=_env(FAULT_EVENTS=str(events.path), FAULT_PAUSE=pause,
                            **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --- SIGKILL at random moments ------------------------------------------------------------------------------------
# Where a kill lands: a hook point (passed k times first), or a random time during start-up or training. Every
# attempt gains at most one checkpoint (4 iterations): a pause inside the 2nd save, before the 7th step, at the 4th
# metrics row at the latest, and the timed kills wait at step 7 if they get that far. So 12 kills cannot finish the
# 60 iterations, however fast the machine.
_KILL_POINTS = ["ckpt-sha", "ckpt-sha-renamed", "ckpt-data", "ckpt-data-renamed", "metrics", "step", "startup",
                "after-step"]


def _kill_pause(where: str, rng: random.Random) -> str:
    if where in ("ckpt-sha", "ckpt-sha-renamed", "ckpt-data"):
        return f"{where}:{rng.randint(1, 2)}"
    if where == "ckpt-data-renamed":  # the checkpoint is complete, older ones not yet pruned
        return f"{where}:1"
    if where == "metrics":
        return f"metrics:{rng.randint(1, 4)}"
    if where == "step":
        return f"step:{rng.randint(1, 6)}"
    return "step:7"  # the cap of the timed kills


def _kill_and_resume(folder: tuple[Path, Path], run: Path, kills: int, seed: int, tmp_path: Path) -> list[str]:
    """SIGKILL the run ``kills`` times at seeded random moments, resuming after each; then let it finish."""
    assert kills * 4 < 60
    rng = random.Random(seed)
    events = _Events(tmp_path / "events")
    schedule = _KILL_POINTS + [rng.choice(_KILL_POINTS) for _ in range(kills - len(_KILL_POINTS))]  # each one once
    rng.shuffle(schedule)
    log: list[str] = []
    for where in schedule:
        args = ["train", "--resume", str(run), "--no-progress"] if (run / "config.json").exists() else \
            _new_run_args(folder, run)
        pause = _kill_pause(where, rng)
        proc = _start(args, events, pause)
        try:
            if where == "startup":  # importing, loading the data, building the model, reading checkpoints
                time.sleep(rng.uniform(0.05, 1.2))
            elif where == "after-step":  # anywhere in training, evaluation, logging or saving
                assert events.wait_for(proc, "step 1 ", proc.pid), proc.communicate()[1]
                time.sleep(rng.uniform(0.0, 0.3))
            else:
                assert events.wait_for(proc, f"pause {where}", proc.pid), proc.communicate()[1]
            assert proc.poll() is None, proc.communicate()[1]
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=HANG_GUARD_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.append(f"{where} {pause}")
        _assert_consistent_after_kill(run)
    proc = _cli("train", "--resume", str(run), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return log


def test_sigkill_inside_checkpoint_writes_then_resume_is_bit_exact(folder, reference, tmp_path: Path) -> None:
    """A kill in each phase of a checkpoint write and in a half-written metrics row; the run still ends as the
    uninterrupted one (the seeded random kills are the slow variant below)."""
    run = tmp_path / "run"
    events = _Events(tmp_path / "events")
    for pause in ("ckpt-sha:2", "ckpt-sha-renamed:1", "ckpt-data:1", "ckpt-data-renamed:1", "metrics:3"):
        args = ["train", "--resume", str(run), "--no-progress"] if (run / "config.json").exists() else \
            _new_run_args(folder, run)
        proc = _start(args, events, pause)
        assert events.wait_for(proc, f"pause {pause.split(':')[0]}", proc.pid), proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=HANG_GUARD_S)
        _assert_consistent_after_kill(run)
    proc = _cli("train", "--resume", str(run), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stdout + proc.stderr
    _assert_same_run(run, reference)


@pytest.mark.slow
def test_sigkill_ten_times_at_random_moments_then_resume_is_bit_exact(folder, reference, tmp_path: Path) -> None:
    run = tmp_path / "run"
    log = _kill_and_resume(folder, run, kills=12, seed=1234, tmp_path=tmp_path)
    assert len(log) == 12
    _assert_same_run(run, reference)


# --- in-process faults: the tiny run of train_utils (12 iterations, checkpoints at 4, 8, 12) --------------------------
def _tiny_cfg(**kw):
    return tiny_config(log_interval=3, keep_checkpoints=3, threads=1, **kw)


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("tiny") / "run"
    fit(_tiny_cfg(), run, data=tiny_bundle(), progress=False)
    return run


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def _resume(run: Path, messages: list[str] | None = None, **kw):
    return fit(None, run, resume=True, data=kw.pop("data", None) or tiny_bundle(), progress=False,
               log=(messages.append if messages is not None else None), **kw)


def _no_leftovers(run: Path, iteration: int) -> None:
    assert not list(run.glob(".*.tmp")), "temp files left behind"
    name = f"checkpoint-{iteration:07d}.pt"
    assert not (run / name).exists() and not checksum_path(run / name).exists()


def _no_space() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["checkpoint data", "checksum", "fsync"])
def test_disk_full_inside_a_checkpoint_write_keeps_the_previous_one_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_reference: Path, where: str) -> None:
    run = tmp_path / "run"
    real_write, real_fsync = io_mod.atomic_write, os.fsync
    before: dict[str, bytes] = {}

    def full_disk_write(path: Path, write) -> None:
        is_target = path.name == ("checkpoint-0000008.pt" if where == "checkpoint data" else
                                  "checkpoint-0000008.pt.sha256")
        if not (is_target and where != "fsync"):
            return real_write(path, write)
        before.update(_snapshot(run))

        def half_then_full(f) -> None:
            buf = io.BytesIO()
            write(buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise _no_space()

        return real_write(path, half_then_full)

    def full_disk_fsync(fd: int) -> None:  # delayed allocation: the disk fills when the data is flushed
        name = os.readlink(f"/proc/self/fd/{fd}")
        if ".checkpoint-0000008.pt." in name and ".sha256." not in name:
            before.update(_snapshot(run))
            raise _no_space()
        real_fsync(fd)

    monkeypatch.setattr(io_mod, "atomic_write", full_disk_write)  # every file is written through the io module
    if where == "fsync":
        monkeypatch.setattr(io_mod.os, "fsync", full_disk_fsync)
    with pytest.raises(CheckpointError, match=r"checkpoint-0000008\.pt: the disk is full.*--resume") as err:
        fit(_tiny_cfg(), run, data=tiny_bundle(), progress=False)
    assert "\n" not in str(err.value)
    _no_leftovers(run, 8)
    assert [i for i, _ in list_checkpoints(run)] == [4]
    assert load_checkpoint(run / "checkpoint-0000004.pt")["iteration"] == 4
    for name in ("checkpoint-0000004.pt", "checkpoint-0000004.pt.sha256", "config.json"):
        assert (run / name).read_bytes() == before[name]
    monkeypatch.undo()  # space is back
    _resume(run)
    _assert_same_run(run, tiny_reference, final=12)


def test_disk_full_while_logging_metrics_is_one_clear_error_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_reference: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"

    real_append = io_mod.append_line

    def append_line(path: Path, line: str) -> None:  # the disk fills once the log holds rows past iteration 6
        if path.name == "metrics.jsonl" and any(r["iter"] >= 6 for r in read_metrics(path)):
            with open(path, "a") as f:
                f.write(line[:7])  # a torn line, then no space
            raise _no_space()
        real_append(path, line)

    monkeypatch.setattr(io_mod, "append_line", append_line)  # every log line is appended through the io module
    data = write_image_folder(tmp_path / "data")
    args = ["train", "--model", "resnet8", "--data", str(data), "--cache-dir", str(tmp_path / "c"), "--out", str(run),
            "--no-progress", "--set", "batch_size=16", "--set", "max_iters=12", "--set", "eval_interval=4",
            "--set", "log_interval=3", "--set", "val_size=16", "--set", "milestones=8,10",
            "--set", "keep_checkpoints=3", "--set", "threads=1"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the disk is full") and "--resume" in err and "Traceback" not in err
    assert [i for i, _ in list_checkpoints(run)] == [4]  # the metrics row of 8 failed before its checkpoint
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    rows = read_metrics(run / "metrics.jsonl")
    assert [(r["kind"], r["iter"]) for r in rows] == [(r["kind"], r["iter"]) for r in read_metrics(
        tiny_reference / "metrics.jsonl")]  # the torn row is gone, nothing doubled


def _unpicklable_at_8(monkeypatch: pytest.MonkeyPatch, before: dict[str, bytes], run: Path) -> None:
    original = engine_mod.Trainer.state_dict

    def state_dict(self):
        state = original(self)
        if self.iteration == 8:
            before.update(_snapshot(run))
            state["hook"] = lambda: None  # pickle cannot store a lambda
        return state

    monkeypatch.setattr(engine_mod.Trainer, "state_dict", state_dict)


def _interrupted_mid_write_at_8(monkeypatch: pytest.MonkeyPatch, before: dict[str, bytes], run: Path) -> None:
    real_write = io_mod.atomic_write

    def write(path: Path, fill) -> None:
        if path.name != "checkpoint-0000008.pt":
            return real_write(path, fill)
        before.update(_snapshot(run))

        def half_then_crash(f) -> None:
            buf = io.BytesIO()
            fill(buf)
            f.write(buf.getvalue()[:1000])
            raise KeyboardInterrupt  # Ctrl-C, or any crash, in the middle of the write

        return real_write(path, half_then_crash)

    monkeypatch.setattr(io_mod, "atomic_write", write)


@pytest.mark.parametrize(("crash", "error"), [(_unpicklable_at_8, CheckpointError),
                                              (_interrupted_mid_write_at_8, KeyboardInterrupt)],
                         ids=["unpicklable", "mid-write"])
def test_crash_inside_a_save_leaves_the_previous_checkpoint_byte_identical(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_reference: Path, crash, error: type) -> None:
    run = tmp_path / "run"
    before: dict[str, bytes] = {}
    crash(monkeypatch, before, run)
    with pytest.raises(error) as err:
        fit(_tiny_cfg(), run, data=tiny_bundle(), progress=False)
    if error is CheckpointError:  # one message naming the file, not a pickling traceback
        assert "could not serialise checkpoint" in str(err.value) and "checkpoint-0000008.pt" in str(err.value)
    after = _snapshot(run)
    for name in ("checkpoint-0000004.pt", "checkpoint-0000004.pt.sha256", "config.json"):
        assert after[name] == before[name]
    _no_leftovers(run, 8)
    monkeypatch.undo()
    _resume(run)
    _assert_same_run(run, tiny_reference, final=12)


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "zero-byte":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "random-bytes":
        path.write_bytes(random.Random(0).randbytes(len(data)))
    elif how == "no-checksum":
        checksum_path(path).unlink()
    elif how == "truncated-with-checksum":  # cut before it was hashed: the checksum matches, the zip does not
        cut = data[: len(data) // 2]
        path.write_bytes(cut)
        checksum_path(path).write_text(f"{hashlib.sha256(cut).hexdigest()}  {path.name}\n")


@pytest.mark.parametrize("how", ["zero-byte", "truncated", "random-bytes", "no-checksum", "truncated-with-checksum"])
def test_damaged_newest_checkpoints_are_named_and_resume_falls_back_to_the_last_good_one(
        tmp_path: Path, tiny_reference: Path, capsys: pytest.CaptureFixture[str], how: str) -> None:
    run = _copy_run(tiny_reference, tmp_path / "run")
    for name in ("checkpoint-0000012.pt", "checkpoint-0000008.pt"):
        _damage(run / name, how)
    if how != "no-checksum":  # eval takes a lone file without its checksum (with a warning)
        assert main(["eval", "--checkpoint", str(run / "checkpoint-0000012.pt"), "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "checkpoint-0000012.pt" in err and "Traceback" not in err
    messages: list[str] = []
    _resume(run, messages)
    assert any("skipping" in m and "checkpoint-0000012.pt" in m for m in messages)
    assert any("skipping" in m and "checkpoint-0000008.pt" in m for m in messages)
    assert any("resuming" in m and "checkpoint-0000004.pt" in m for m in messages)
    _assert_same_run(run, tiny_reference, final=12)  # the damaged ones were rewritten, good


def test_no_usable_checkpoint_refuses_to_resume_and_keeps_the_runs_history(tmp_path: Path,
                                                                         tiny_reference: Path) -> None:
    run = _copy_run(tiny_reference, tmp_path / "run")
    for _, path in list_checkpoints(run):
        _damage(path, "truncated")
    before = _snapshot(run)
    with pytest.raises(CheckpointError, match=r"none of the checkpoints .* can be used.*nothing was changed"):
        _resume(run, [])
    assert _snapshot(run) == before  # metrics.jsonl was not cut back to iteration 0


class _Evil:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_code_carrying_checkpoint_is_refused_on_resume_eval_and_export(
        tmp_path: Path, tiny_reference: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _copy_run(tiny_reference, tmp_path / "run")
    marker = tmp_path / "code-ran"
    evil = run / "checkpoint-0000099.pt"  # the newest, with a valid checksum: only weights-only loading stops it
    torch.save({"format": "resnetlab.checkpoint", "version": 1, "model": _Evil(str(marker))}, evil)
    checksum_path(evil).write_text(f"{hashlib.sha256(evil.read_bytes()).hexdigest()}  {evil.name}\n")
    messages: list[str] = []
    _resume(run, messages)
    assert any("skipping" in m and "checkpoint-0000099.pt" in m and "run code" in m for m in messages)
    assert not marker.exists()
    assert main(["eval", "--checkpoint", str(evil), "--no-progress"]) == 1
    assert "checkpoint-0000099.pt" in capsys.readouterr().err
    out = tmp_path / "m.pt2"
    assert main(["export", "resnet8", "--kw", "num_classes=4", "--checkpoint", str(evil), "--format", "pt2",
                 "--out", str(out)]) == 1
    assert "checkpoint-0000099.pt" in capsys.readouterr().err
    assert not marker.exists() and not out.exists()


# --- data ---------------------------------------------------------------------------------------------------------
def _folder_cfg(data: Path, cache: Path, **kw):
    return _tiny_cfg(data=str(data), cache_dir=str(cache), **kw)


def _stop_at(monkeypatch: pytest.MonkeyPatch, iteration: int) -> None:
    original = engine_mod.Trainer.train_step

    def step(self, images, labels):
        if self.iteration == iteration:
            raise KeyboardInterrupt
        return original(self, images, labels)

    monkeypatch.setattr(engine_mod.Trainer, "train_step", step)


def test_corrupt_data_cache_is_rebuilt_not_used_by_a_run(tmp_path: Path) -> None:
    data, cache = write_image_folder(tmp_path / "data"), tmp_path / "cache"
    fit(_folder_cfg(data, cache), tmp_path / "a", progress=False)
    (path,) = cache.glob("imagefolder-*.pt")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)  # zeroed pixels inside the tensor data
    path.write_bytes(bytes(raw))
    with pytest.warns(DataWarning, match="corrupt or unreadable.*decoding the images again"):
        fit(_folder_cfg(data, cache), tmp_path / "b", progress=False)
    a, b = load_checkpoint(tmp_path / "a" / "checkpoint-0000012.pt"), load_checkpoint(
        tmp_path / "b" / "checkpoint-0000012.pt")
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())  # trained on the true pixels


def test_resume_refuses_data_that_changed_since_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    data, cache = write_image_folder(tmp_path / "data"), tmp_path / "cache"
    run = tmp_path / "run"
    _stop_at(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        fit(_folder_cfg(data, cache), run, progress=False)
    monkeypatch.undo()
    changed = Path(shutil.copytree(data, tmp_path / "changed"))
    image = sorted((changed / "train" / "b").iterdir())[0]
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] ^= 0xFF  # one pixel of one image
    Image.fromarray(pixels).save(image)
    before = _snapshot(run)
    assert main(["train", "--resume", str(run), "--data", str(changed), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the data changed since") and "checkpoint-0000004.pt" in err
    assert _snapshot(run) == before  # config.json still names the run's own data
    fit(None, run, resume=True, progress=False)  # with its own data the run goes on, bit-exact
    fit(_folder_cfg(data, cache), tmp_path / "full", progress=False)
    _assert_same_run(run, tmp_path / "full", final=12)


def _write_bad_files(data: Path) -> list[Path]:
    truncated = data / "train" / "a" / "00000.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    text = data / "test" / "b" / "readme.txt"
    text.write_text("not an image")
    return [truncated, text]


def test_bad_images_stop_the_run_by_path_unless_skip_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_image_folder(tmp_path / "data")
    bad = _write_bad_files(data)
    run = tmp_path / "run"
    common = ["--model", "resnet8", "--data", str(data), "--cache-dir", str(tmp_path / "c"), "--no-progress",
              "--set", "batch_size=16", "--set", "max_iters=4", "--set", "eval_interval=4", "--set", "val_size=16",
              "--set", "milestones=2,3", "--set", "threads=1"]
    assert main(["train", *common, "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 2 unreadable image file(s)") and "--skip-bad" in err
    assert all(str(p) in err for p in bad)
    assert not (run / "config.json").exists() and not list_checkpoints(run)  # nothing started
    with pytest.warns(DataWarning, match=r"skipped 2 unreadable image file\(s\)") as caught:
        assert main(["train", *common, "--out", str(run), "--skip-bad"]) == 0
    assert all(str(p) in str(caught[0].message) for p in bad)
    state = load_checkpoint(run / "checkpoint-0000004.pt")
    assert state["config"]["skip_bad"] is True
    with pytest.warns(DataWarning, match=r"skipped 2 unreadable"):  # the run's own setting, read back
        assert main(["train", "--resume", str(run), "--no-progress"]) == 0


@pytest.mark.parametrize("label", [-100, -1, 4])
@pytest.mark.parametrize("split", ["train_y", "val_y", "test_y"])
def test_bad_labels_are_one_message_before_any_compute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: int,
                                                       split: str) -> None:
    bundle = tiny_bundle()
    bad = getattr(bundle, split).clone()
    bad[3] = label
    with pytest.raises(DataError, match=r"labels must lie in \[0, 4\).*" + str(label)):
        type(bundle)(**{**vars(bundle), split: bad})  # a DataBundle checks its labels when it is made
    setattr(bundle, split, bad)  # changed after construction: the trainer checks again
    monkeypatch.setattr(trainer_mod, "build_model", lambda *a: pytest.fail("the model was built"))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 4\)" + (".*ignore_index" if label == -100 else "")):
        fit(_tiny_cfg(), tmp_path / "run", data=bundle, progress=False)
    assert not (tmp_path / "run" / "config.json").exists()


def test_loader_and_evaluate_reject_ignored_labels() -> None:
    x = torch.zeros(8, 3, 4, 4, dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, -100, 0, 1, 2, 3])
    with pytest.raises(DataError, match="ignore_index"):
        BatchLoader(x, y, 4, seed=0, train=True)
    with pytest.raises(DataError, match=r"labels must be integer"):
        BatchLoader(x, y.float(), 4, seed=0, train=True)
    model = create_model("resnet8", num_classes=4)
    with pytest.raises(DataError, match="ignore_index"):
        evaluate(model, x, y, torch.zeros(3, 4, 4), None, num_classes=4)
    with pytest.raises(DataError, match=r"\[0, 4\)"):
        evaluate(model, x, torch.full((8,), 4), torch.zeros(3, 4, 4), None, num_classes=4)


def _three_class_arrays() -> SplitArrays:
    a = synthetic_arrays()
    keep, keep_t = a.train_y < 3, a.test_y < 3
    return SplitArrays(a.train_x[keep], a.train_y[keep], a.test_x[keep_t], a.test_y[keep_t], a.classes[:3])


def test_other_class_count_is_refused_on_resume_and_eval(tmp_path: Path, tiny_reference: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = _copy_run(tiny_reference, tmp_path / "run")
    _damage(run / "checkpoint-0000012.pt", "truncated")  # so that there is something left to train
    before = _snapshot(run)
    three = make_bundle(_three_class_arrays(), val_size=12, seed=0)
    with pytest.raises(CheckpointError, match=r"trained on 4 classes \(a, b, c, d\) but the data now has 3"):
        _resume(run, [], data=three)
    assert _snapshot(run) == before
    data = write_image_folder(tmp_path / "three", _three_class_arrays())
    assert main(["eval", "--checkpoint", str(run / "checkpoint-0000008.pt"), "--data", str(data), "--cache-dir",
                 str(tmp_path / "c"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "classes" in err and "Traceback" not in err


def test_checkpoint_of_another_network_is_refused_on_resume_eval_and_export(
        tmp_path: Path, tiny_reference: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "resnet14"
    fit(_tiny_cfg(model="resnet14", max_iters=4), other, data=tiny_bundle(), progress=False)
    # 1. another run's checkpoint dropped into this run
    run = _copy_run(tiny_reference, tmp_path / "run")
    shutil.copy(other / "checkpoint-0000004.pt", run / "checkpoint-0000099.pt")
    shutil.copy(other / "checkpoint-0000004.pt.sha256", run / "checkpoint-0000099.pt.sha256")
    before = _snapshot(run)
    with pytest.raises(CheckpointError, match=r"checkpoint-0000099\.pt was made by a different run.*resnet14"):
        _resume(run)
    assert _snapshot(run) == before
    # 2. this run's config with a deeper network's weights (a hand-edited file): named, with what does not fit
    for p in (run / "checkpoint-0000099.pt", run / "checkpoint-0000099.pt.sha256"):
        p.unlink()
    state = load_checkpoint(run / "checkpoint-0000012.pt")
    state["model"] = load_checkpoint(other / "checkpoint-0000004.pt")["model"]
    state.pop("format"), state.pop("version")
    save_checkpoint(state, run / "checkpoint-0000016.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint-0000016\.pt cannot be resumed.*does not fit"):
        _resume(run)
    assert main(["eval", "--checkpoint", str(run / "checkpoint-0000016.pt"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "checkpoint-0000016.pt" in err and "does not fit" in err
    # 3. export under another architecture's name
    out = tmp_path / "m.pt2"
    assert main(["export", "resnet20", "--checkpoint", str(run / "checkpoint-0000012.pt"), "--format", "pt2",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "resnet8" in err and "Traceback" not in err and not out.exists()


# --- loss, memory ---------------------------------------------------------------------------------------------------
def test_infinite_loss_stops_the_cli_with_the_iteration_and_keeps_the_checkpoint(folder, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _start(_new_run_args(folder, run), _Events(tmp_path / "events"), FAULT_INF_AT="6")
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: the training loss became inf at iteration 6") and "Traceback" not in err
    assert "checkpoint-0000004.pt is intact" in last
    assert [i for i, _ in list_checkpoints(run)] == [4]
    load_checkpoint(run / "checkpoint-0000004.pt")


@pytest.mark.parametrize("exc", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    torch.OutOfMemoryError("allocation failed"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                 "allocate 8589934592 bytes"),
], ids=["cuda", "bare", "cpu"])
def test_out_of_memory_is_actionable_and_writes_no_partial_checkpoint(
        folder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        exc: Exception) -> None:
    original = resnet_mod.ResNet.forward
    calls = {"train": 0}

    def forward(self, x):
        if self.training:
            calls["train"] += 1
            if calls["train"] == 6:
                raise exc
        return original(self, x)

    monkeypatch.setattr(resnet_mod.ResNet, "forward", forward)
    run = tmp_path / "run"
    args = _new_run_args(folder, run)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory at iteration 6") and err.count("\n") == 1
    for hint in ("grad_accum", "precision=bf16", "activation_checkpointing", "no partial checkpoint",
                 "checkpoint-0000004.pt is intact"):
        assert hint.lower() in err.lower(), hint
    assert [i for i, _ in list_checkpoints(run)] == [4]
    load_checkpoint(run / "checkpoint-0000004.pt")
    assert not list(run.glob(".*.tmp"))


# --- two processes, one run directory -------------------------------------------------------------------------------
def test_second_process_on_a_running_directory_refuses_and_overwrites_nothing(
        folder, reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    events = _Events(tmp_path / "events")
    first = _start(_new_run_args(folder, run), events, "ckpt-data:2")  # holds the run, mid-way through a save
    try:
        assert events.wait_for(first, "pause ckpt-data", first.pid), first.communicate()[1]
        before = _snapshot(run)
        assert main(["train", "--resume", str(run), "--no-progress"]) == 1
        assert f"another process (pid {first.pid}) is training in {run}" in capsys.readouterr().err
        assert main(_new_run_args(folder, run)) == 1
        assert "already holds a run" in capsys.readouterr().err
        assert _snapshot(run) == before
        events.release()
        _, err = first.communicate(timeout=HANG_GUARD_S)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    _assert_same_run(run, reference)  # the first one finished undisturbed


def test_a_run_finished_by_another_process_meanwhile_is_not_overwritten(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The race: both processes see an empty directory, the other one takes the lock first and finishes."""
    run = tmp_path / "run"
    real_lock = ckpt_mod.RunLock
    raced: list[bool] = []
    finished: dict[str, bytes] = {}  # the other process's run, byte for byte, as it left it

    class SlowLock(real_lock):
        def __enter__(self):
            if not raced:
                raced.append(True)
                assert not run.exists()  # this process checked an empty directory and is about to lock it
                fit(_tiny_cfg(max_iters=4), run, data=tiny_bundle(), progress=False)  # the other process
                finished.update(_snapshot(run))
            return super().__enter__()

    monkeypatch.setattr(ckpt_mod, "RunLock", SlowLock)
    with pytest.raises(Exception, match="already holds a run") as err:
        fit(_tiny_cfg(lr=0.05), run, data=tiny_bundle(), progress=False)
    assert "nothing was overwritten" in str(err.value)
    assert raced and {"config.json", "metrics.jsonl", "checkpoint-0000004.pt", "summary.json"} <= set(finished)
    assert _snapshot(run) == finished  # not a byte of the finished run changed, and nothing was added
    assert load_checkpoint(run / "checkpoint-0000004.pt")["config"]["lr"] == 0.1
    assert '"lr": 0.1' in (run / "config.json").read_text()


# --- distributed ------------------------------------------------------------------------------------------------------
LOST_PEER = "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:29500"


@pytest.mark.parametrize("failure", ["peer", "other"])
def test_a_collective_failing_because_a_peer_died_is_one_clear_message(
        failure: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 0 of a 2-process job whose training collective fails at iteration 6: a peer's death (gloo's error) is
    reported as lost contact, with the resume command and the intact checkpoint; any other error is not disguised.

    One real process: a gloo group of one, and DistInfo saying rank 0 of 2 (what torchrun's rank 0 sees)."""
    import torch.distributed as dist

    from resnetlab.errors import ResNetLabError
    from resnetlab.train.distributed import DistInfo

    run = tmp_path / "run"
    monkeypatch.setattr(engine_mod, "init_distributed", lambda device: DistInfo(0, 2, 0, 2))
    real_reduce, steps = trainer_mod.all_reduce_sum, []

    def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:  # every training step's collective
        steps.append(1)
        if len(steps) == 6:
            raise dist.DistBackendError(LOST_PEER) if failure == "peer" else RuntimeError("an unrelated failure")
        return real_reduce(t, info)

    monkeypatch.setattr(trainer_mod, "all_reduce_sum", all_reduce_sum)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(RuntimeError if failure == "other" else ResNetLabError) as err:
            fit(_tiny_cfg(), run, data=tiny_bundle(), progress=False)
        assert not dist.is_initialized()  # the engine left the process group on its way out
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert [i for i, _ in list_checkpoints(run)] == [4]
    if failure == "other":
        assert str(err.value) == "an unrelated failure" and not isinstance(err.value, ResNetLabError)
        return
    message = str(err.value)
    assert message.startswith("rank 0 lost contact with another process of the distributed job"), message
    assert "Connection closed by peer" in message  # gloo's own words, for the log
    assert f"resnetlab train --resume {run}`" in message and f"{run / 'checkpoint-0000004.pt'} is intact" in message
    monkeypatch.setattr(engine_mod, "init_distributed", lambda device: DistInfo())  # as the message says: resume
    monkeypatch.setattr(trainer_mod, "all_reduce_sum", real_reduce)
    assert fit(None, run, resume=True, data=tiny_bundle(), progress=False).iterations == 12


@pytest.mark.slow
def test_ddp_worker_killed_ends_the_job_and_resume_continues(folder, reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    events = _Events(tmp_path / "events")
    # torchrun checks its workers every --monitor-interval seconds, then stops the survivors (SIGTERM): a race with
    # rank 0 noticing the death in its collective. Either way rank 0 ends with one message; 5 s lets the collective
    # usually win, so both paths run.
    cmd = [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           "--monitor-interval=5", str(INJECT), *_new_run_args(folder, run)]
    job = subprocess.Popen(cmd, env=_env(FAULT_EVENTS=str(events.path), FAULT_PAUSE="step:6", FAULT_RANK="1"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = events.wait_for(job, " 1 pause step")
        assert line is not None, job.communicate()[1]
        os.kill(int(line.split()[0]), signal.SIGKILL)  # rank 1 dies between iterations 6 and 7
        _, err = job.communicate(timeout=HANG_GUARD_S)  # ends, does not hang
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode != 0
    assert "[rank0]: Traceback" not in err  # rank 0 says what happened in one message, whichever comes first:
    # its collective failing on the dead peer, or torchrun stopping it (SIGTERM) on seeing the death
    assert ("error: rank 0 lost contact with another process of the distributed job" in err
            or "error: rank 0 was stopped by its launcher (SIGTERM): another process of the distributed job ended"
            in err), err
    assert f"resnetlab train --resume {run}`" in err and "checkpoint-0000004.pt is intact" in err, err
    assert [i for i, _ in list_checkpoints(run)] == [4]
    proc = _cli("train", "--resume", str(run), "--no-progress")  # one process is enough to continue
    assert proc.returncode == 0, proc.stderr
    assert "from checkpoint-0000004.pt" in proc.stdout
    state = load_checkpoint(run / "checkpoint-0000060.pt")
    assert state["iteration"] == 60 and state["world_size"] == 1
    rows = read_metrics(run / "metrics.jsonl")
    assert [(r["kind"], r["iter"]) for r in rows] == [(r["kind"], r["iter"]) for r in read_metrics(
        reference / "metrics.jsonl")]


@pytest.mark.slow
def test_ddp_rank_stopped_by_the_launcher_says_so_in_one_line_and_keeps_its_checkpoints(folder, tmp_path: Path) -> None:
    """torchrun stops the survivors of a job (SIGTERM) when one process dies or the job is cancelled: rank 0 ends
    with one message that says how to go on, and its checkpoints stay."""
    run = tmp_path / "run"
    events = _Events(tmp_path / "events")
    cmd = [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           str(INJECT), *_new_run_args(folder, run)]
    job = subprocess.Popen(cmd, env=_env(FAULT_EVENTS=str(events.path), FAULT_PAUSE="step:6", FAULT_RANK="0"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = events.wait_for(job, " 0 pause step")
        assert line is not None, job.communicate()[1]
        os.kill(int(line.split()[0]), signal.SIGTERM)  # as torchrun stops a survivor
        _, err = job.communicate(timeout=HANG_GUARD_S)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode != 0
    assert "[rank0]: Traceback" not in err
    assert ("error: rank 0 was stopped by its launcher (SIGTERM): another process of the distributed job ended (it "
            f"crashed or was killed; see its log) or the job was cancelled. Continue with `resnetlab train --resume "
            f"{run}` (any number of processes): the last checkpoint {run / 'checkpoint-0000004.pt'} is intact"
            ) in err, err
    assert [i for i, _ in list_checkpoints(run)] == [4]


# --- command line contract --------------------------------------------------------------------------------------------
def test_cli_exit_codes_and_resume_never_starts_fresh(tmp_path: Path) -> None:
    proc = _cli("train", "--out", str(tmp_path / "a"), "--resume", str(tmp_path / "b"))
    assert proc.returncode == 2 and "not allowed with" in proc.stderr  # usage error: never guess which one
    proc = _cli("train", "--resume", str(tmp_path / "missing"), "--no-progress")
    assert proc.returncode == 1 and proc.stderr.startswith("error: cannot resume") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "missing").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["train", "--resume", str(empty), "--no-progress"]) == 1
    assert not list(empty.iterdir())  # no config, no lock, no checkpoint: nothing was started


def test_a_failed_export_leaves_the_older_file_and_no_temporary(tmp_path: Path) -> None:
    from torch import nn

    from resnetlab.export import export_model

    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("the exporter failed")

    out = tmp_path / "model.pt2"
    out.write_bytes(b"the older export")
    with pytest.raises(RuntimeError, match="the exporter failed"):
        export_model(Broken(), "pt2", out, 8)
    assert out.read_bytes() == b"the older export" and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt2"]
    export_model(nn.Flatten(), "pt2", out, 8)  # a good export replaces it, and leaves nothing beside it
    assert out.read_bytes() != b"the older export" and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt2"]
