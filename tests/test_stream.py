"""Streaming image folders (ImageNet scale): layout, deterministic and resumable batches, the paper's augmentation,
bad files, the mean image, the ImageNet recipes, plateau schedule, exact resume, DDP, rendezvous errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from imagenet_utils import WNIDS, stream_config, write_imagenet_folder
from resnetlab.cli import main
from resnetlab.data import DataError, DataWarning, derive_seed, make_bundle
from resnetlab.data import stream as stream_mod
from resnetlab.data.stream import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    Augment,
    StreamLoader,
    decode_rgb,
    image_statistics,
    open_stream,
    scan_stream_folder,
)
from resnetlab.data.views import ViewSpec, make_views
from resnetlab.train import (
    CheckpointError,
    ConfigError,
    LRSchedule,
    Trainer,
    fit,
    load_checkpoint,
    read_metrics,
    resolve_config,
)
from resnetlab.train import engine as engine_mod
from resnetlab.train.checkpoint import list_checkpoints
from resnetlab.train.report import evaluate_checkpoint
from train_utils import free_port, synthetic_arrays, tiny_config

AUG = Augment(crop=32, scale_range=(36, 48), flip=True, lighting=0.1)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_imagenet_folder(tmp_path_factory.mktemp("imagenet") / "tiny")


def _loader(tree: Path, aug: Augment = AUG, **kw) -> StreamLoader:
    opts = {"batch_size": 8, "seed": 3, "workers": 0, **kw}
    return StreamLoader(tree, scan_stream_folder(tree).splits["train"], aug, **opts)


def _epoch(loader: StreamLoader, epoch: int = 0, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader.batches(epoch, start))


# --- layout ---------------------------------------------------------------------------------------------------------
def test_scan_lists_the_imagenet_layout(tree: Path) -> None:
    layout = scan_stream_folder(tree)
    assert layout.classes == WNIDS
    train, val = layout.splits["train"], layout.splits["val"]
    assert len(train) == 24 and len(val) == 9 and "test" not in layout.splits
    assert train.path(0) == f"train/{WNIDS[0]}/{WNIDS[0]}_0000.png"
    assert train.labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    assert train.paths.dtype.kind == "S"  # compact bytes, shared by forked workers without copy-on-write churn


def test_bad_layouts_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        scan_stream_folder(tmp_path / "missing")
    root = write_imagenet_folder(tmp_path / "t", n_train=1, n_val=1)
    shutil.rmtree(root / "val" / WNIDS[1])
    (root / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"x")  # the flat val/ of the official archive
    with pytest.raises(DataError, match=r"missing \['n01443537'\].*flat"):
        scan_stream_folder(root)
    shutil.rmtree(root / "val")
    with pytest.raises(DataError, match="no val/ or test/"):
        scan_stream_folder(root)


def test_a_batch_larger_than_the_training_set_names_the_key_to_change(tree: Path) -> None:
    n = len(scan_stream_folder(tree).splits["train"])
    with pytest.raises(DataError, match=rf"{n} training images make no full batch of {n + 1}: lower the batch size "
                                        rf"to at most {n} \(--set batch_size=N"):
        _loader(tree, batch_size=n + 1)


# --- determinism, resume, ranks -------------------------------------------------------------------------------------
def test_batches_depend_on_seed_epoch_position_only_never_the_global_rng(tree: Path) -> None:
    torch.manual_seed(1)
    before = torch.get_rng_state()
    a = _epoch(_loader(tree))
    assert torch.equal(torch.get_rng_state(), before)  # iterating (DataLoader included) never touches it
    torch.manual_seed(999)
    b = _epoch(_loader(tree))
    assert len(a) == 3 and all(x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 for x, _ in a)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    c = _epoch(_loader(tree), epoch=1)
    assert not torch.equal(torch.cat([y for _, y in a]), torch.cat([y for _, y in c]))  # reshuffled
    d = _epoch(_loader(tree, seed=4))
    assert not torch.equal(a[0][0], d[0][0])


def test_worker_processes_do_not_change_the_batches(tree: Path) -> None:
    a = _epoch(_loader(tree, workers=0), epoch=2)
    b = _epoch(_loader(tree, workers=2), epoch=2)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_resume_mid_epoch_skips_batches_without_decoding_them(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = _epoch(_loader(tree), epoch=1)
    decoded: list[str] = []
    original = stream_mod.decode_rgb

    def counting(path, min_side=None):
        decoded.append(str(path))
        return original(path, min_side)

    monkeypatch.setattr(stream_mod, "decode_rgb", counting)
    tail = _epoch(_loader(tree), epoch=1, start=2)
    assert len(decoded) == 8  # one batch: batches 0 and 1 were never read
    assert len(tail) == 1 and torch.equal(tail[0][0], full[2][0]) and torch.equal(tail[0][1], full[2][1])
    with pytest.raises(ValueError, match="start must be in"):
        _loader(tree).batches(0, 4)


def test_ranks_get_contiguous_slices_of_the_same_global_batch(tree: Path) -> None:
    one = _epoch(_loader(tree), epoch=0)
    r0 = _epoch(_loader(tree, rank=0, world_size=2), epoch=0)
    r1 = _epoch(_loader(tree, rank=1, world_size=2), epoch=0)
    for (x, y), (x0, y0), (x1, y1) in zip(one, r0, r1, strict=True):
        assert x0.shape[0] == x1.shape[0] == 4
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    with pytest.raises(DataError, match="divisible"):
        _loader(tree, batch_size=9, world_size=2)


# --- the paper's augmentation -------------------------------------------------------------------------------------
def test_training_sample_is_scale_crop_flip_and_pca_lighting_drawn_in_order(tree: Path) -> None:
    loader = _loader(tree)
    images, labels = next(iter(loader.batches(5)))
    order = loader.order(5)
    for pos in (0, 3, 6):
        index = int(order[pos])
        path = tree / scan_stream_folder(tree).splits["train"].path(index)
        g = torch.Generator().manual_seed(derive_seed("stream-augment", 3, 5, pos))
        side = int(torch.randint(36, 49, (1,), generator=g))
        img = decode_rgb(path, side).float()
        h, w = img.shape[-2:]
        size = (side, round(w * side / h)) if h <= w else (round(h * side / w), side)
        img = F.interpolate(img[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        top = int(torch.randint(0, size[0] - 32 + 1, (1,), generator=g))
        left = int(torch.randint(0, size[1] - 32 + 1, (1,), generator=g))
        crop = img[:, top:top + 32, left:left + 32]
        if int(torch.randint(0, 2, (1,), generator=g)):
            crop = crop.flip(-1)
        alpha = torch.randn(3, generator=g) * 0.1
        rgb = [255 * sum(IMAGENET_EIGVEC[c][j] * alpha[j].item() * IMAGENET_EIGVAL[j] for j in range(3))
               for c in range(3)]
        expected = crop + torch.tensor(rgb).view(3, 1, 1)
        torch.testing.assert_close(images[pos], expected, rtol=0, atol=1e-3)
        assert int(labels[pos]) == index // 8


def test_lighting_is_a_per_image_colour_shift_along_imagenets_principal_components(tree: Path) -> None:
    lit = next(iter(_loader(tree).batches(0)))[0]
    plain = next(iter(_loader(tree, aug=Augment(32, (36, 48), True, 0.0)).batches(0)))[0]
    shift = (lit - plain).mean((2, 3))  # [B, 3]: a constant per image and channel
    torch.testing.assert_close(lit - plain, shift[:, :, None, None].expand_as(lit), rtol=0, atol=1e-3)
    alpha = torch.linalg.solve(255 * torch.tensor(IMAGENET_EIGVEC) * torch.tensor(IMAGENET_EIGVAL), shift.T).T
    assert 0 < alpha.abs().max() < 0.5  # alpha ~ N(0, 0.1)


# --- bad files, statistics ----------------------------------------------------------------------------------------
def test_unreadable_image_is_named_and_skipped_only_with_skip_bad(tmp_path: Path) -> None:
    root = write_imagenet_folder(tmp_path / "t")
    bad = root / "train" / WNIDS[1] / "zz_truncated.JPEG"
    bad.write_bytes((root / "train" / WNIDS[1] / f"{WNIDS[1]}_0001.JPEG").read_bytes()[:40])
    with pytest.raises(DataError, match=r"(?s)zz_truncated\.JPEG.*skip_bad"):
        open_stream(root, crop=32, workers=0, cache_dir=tmp_path / "c", progress=False)  # the mean image reads it
    with pytest.warns(DataWarning, match="zz_truncated.JPEG"):
        data = open_stream(root, crop=32, scale_range=(36, 48), workers=0, cache_dir=tmp_path / "c",
                           progress=False, skip_bad=True)
    strict = StreamLoader(root, data.splits["train"], AUG, 25, 0, workers=0)  # all 25 files in one batch
    with pytest.raises(DataError, match=r"zz_truncated\.JPEG"):
        _epoch(strict)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = _epoch(data.train_loader(25, 0))
    assert any("zz_truncated.JPEG" in str(w.message) for w in caught)
    assert batches[0][0].shape[0] == 25  # replaced by a readable image: the batch keeps its size


def test_mean_image_is_the_mean_of_center_views_and_cached(tree: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    files = scan_stream_folder(tree).splits["train"]
    stats = image_statistics(tree, files, 32, n=100, workers=0, cache_dir=tmp_path, progress=False)
    views = torch.stack([make_views(decode_rgb(tree / files.path(i), 37), "center", ViewSpec.imagenet(32))[0]
                         for i in range(len(files))]).double()
    torch.testing.assert_close(stats["mean_image"], views.mean(0).float())
    torch.testing.assert_close(stats["channel_mean"], views.mean((0, 2, 3)).float())
    torch.testing.assert_close(stats["channel_std"], views.std((0, 2, 3), correction=0).float(), rtol=1e-4, atol=1e-3)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cached statistics should have been used")

    monkeypatch.setattr(stream_mod, "iterate_views", no_decoding)
    again = image_statistics(tree, files, 32, n=100, workers=0, cache_dir=tmp_path, progress=False)
    assert torch.equal(again["mean_image"], stats["mean_image"])
    channel = open_stream(tree, crop=32, normalize="channel", workers=0, cache_dir=tmp_path, mean_images=100,
                          progress=False)
    assert channel.mean.shape == (3, 1, 1) and channel.std is not None and channel.std.shape == (3, 1, 1)


# --- recipes and schedule -----------------------------------------------------------------------------------------
def test_imagenet_recipes_are_the_papers() -> None:
    cfg = resolve_config("imagenet_paper")
    o, d = cfg.optim, cfg.data
    assert (o.batch_size, o.lr, o.momentum, o.weight_decay, cfg.schedule.max_iters) == (256, 0.1, 0.9, 1e-4, 600_000)
    assert (d.loader, d.crop_size, d.scale_range, d.lighting, d.normalize) == ("stream", 224, (256, 480), 0.1, "pixel")
    assert cfg.schedule.lr_schedule == "plateau" and cfg.schedule.lr_decay == 0.1 and cfg.data.val_size == 0
    steps = resolve_config("imagenet_paper_steps")
    assert steps.schedule.lr_schedule == "step" and steps.schedule.milestones == (30 * 5005, 60 * 5005)
    assert resolve_config("imagenet_paper", ["grad_accum=8"]).optim.grad_accum == 8
    with pytest.raises(ConfigError, match="scale_range"):
        resolve_config("imagenet_paper", ["scale_range=200,480"])  # a 224 crop does not fit a 200 side
    with pytest.raises(ConfigError, match="loader must be"):
        resolve_config("imagenet_paper", ["loader=disk"])
    roundtrip = type(cfg).from_dict(json.loads(cfg.to_json()))
    assert roundtrip == cfg  # tuples survive JSON (a resumed run compares configs)


def test_plateau_schedule_divides_by_10_after_patience_stale_validations() -> None:
    s = LRSchedule(0.1, (), 0.1, plateau=True, patience=2, threshold=0.5)
    lrs = []
    for it, err in enumerate([60.0, 50.0, 49.8, 49.9, 49.0, 45.0, 44.9, 44.8], 1):
        s.observe_validation(it * 100, err)
        lrs.append(s.lr(it * 100))
    # 49.8, 49.9 do not beat 50 by > 0.5 -> /10 at 400; 49.0 -> stale 1 (needs < 49.5), 45.0 improves; 44.9, 44.8 -> /10
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001])
    assert s.reduced_at == [400, 800]
    restored = LRSchedule(0.1, (), 0.1, plateau=True, patience=2, threshold=0.5)
    restored.load_state_dict(s.state_dict())
    assert (restored.best, restored.stale, restored.reduced_at, restored.lr(900)) == (45.0, 0, [400, 800], s.lr(900))
    old = LRSchedule(0.1, (5,), 0.1)
    old.load_state_dict({"warmup": False, "warmup_ended_at": None, "recent": []})  # a checkpoint from before
    assert old.lr(6) == pytest.approx(0.01)


def test_plateau_needs_a_validation_split() -> None:
    bundle = make_bundle(synthetic_arrays(), val_size=0, seed=0)
    with pytest.raises(ConfigError, match="plateau watches the validation error"):
        Trainer(tiny_config(lr_schedule="plateau", val_size=0), bundle)


# --- the engine on streamed data ----------------------------------------------------------------------------------
def _params(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def _rows(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in read_metrics(run / "metrics.jsonl")]


def test_stream_resume_mid_epoch_equals_uninterrupted_with_the_plateau_state(tree: Path, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = stream_config(tree, tmp_path / "cache")
    full = fit(cfg, tmp_path / "full", progress=False)
    assert full.iterations == 8 and full.val_error is not None
    state = load_checkpoint(tmp_path / "full" / "checkpoint-0000008.pt")
    assert state["schedule"]["plateau"]["reduced_at"] == [4, 6, 8] and state["input_size"] == 32
    assert state["classes"] == WNIDS and state["mean"].shape == (3, 32, 32)
    assert [r["lr"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if r["kind"] == "train"] == \
        pytest.approx([0.1, 0.1, 0.01, 0.001])

    original = engine_mod.Trainer.train_step

    def dies_at_6(self, images, labels):
        if self.iteration == 5:  # epoch 1 (3 batches an epoch), batch 2: mid-epoch, after the checkpoint at 4
            raise KeyboardInterrupt
        return original(self, images, labels)

    monkeypatch.setattr(engine_mod.Trainer, "train_step", dies_at_6)
    with pytest.raises(KeyboardInterrupt):
        fit(stream_config(tree, tmp_path / "cache"), tmp_path / "cut", progress=False)
    assert [i for i, _ in list_checkpoints(tmp_path / "cut")] == [2, 4]
    monkeypatch.setattr(engine_mod.Trainer, "train_step", original)
    fit(None, tmp_path / "cut", resume=True, progress=False)
    a, b = _params(tmp_path / "full" / "checkpoint-0000008.pt"), _params(tmp_path / "cut" / "checkpoint-0000008.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit for bit: same batches, same lr after the plateau reduction
    assert _rows(tmp_path / "full") == _rows(tmp_path / "cut")


def test_resume_on_another_streamed_folder_with_the_same_classes_is_refused(tree: Path, tmp_path: Path) -> None:
    fit(stream_config(tree, tmp_path / "cache", max_iters=4), tmp_path / "run", progress=False)
    other = tmp_path / "other"
    shutil.copytree(tree, other)
    next((other / "train" / WNIDS[0]).iterdir()).unlink()  # one training image fewer, same class names
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    with pytest.raises(CheckpointError, match="the data changed"):
        fit(stream_config(other, tmp_path / "cache", max_iters=4), tmp_path / "run", resume=True, progress=False)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before  # nothing was changed
    fit(stream_config(tree, tmp_path / "cache", max_iters=4), tmp_path / "run", resume=True, progress=False)


def test_cli_trains_the_imagenet_recipe_on_a_folder_and_evaluates_10crop(tree: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    sets = ["batch_size=6", "max_iters=4", "eval_interval=2", "log_interval=2", "crop_size=32", "scale_range=36,48",
            "workers=1", "eval_batch_size=9", "grad_accum=2", "mean_images=12"]
    args = ["train", "--recipe", "imagenet_paper", "--model", "resnet8", "--data", str(tree), "--out", str(run),
            "--cache-dir", str(tmp_path / "c"), "--no-progress"]
    assert main([*args, *[a for s in sets for a in ("--set", s)]]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["loader"] == "stream" and saved["recipe"] == "imagenet_paper" and saved["grad_accum"] == 2
    evals = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["iter"] for r in evals] == [2, 4] and all("test_error" not in r for r in evals)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "checkpoint-0000004.pt"), "--protocol", "10crop",
                 "--workers", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "on 9 test images" in out and "(10crop test)" in out
    report = json.loads((run / "eval" / "checkpoint-0000004-10crop" / "confusion.json").read_text())
    assert report["protocol"] == "10crop" and report["classes"] == WNIDS and report["images"] == 9


def test_unreachable_rendezvous_is_one_clear_error() -> None:
    code = ("import torch\nfrom resnetlab.train.distributed import init_distributed\n"
            "init_distributed(torch.device('cpu'), timeout_s=2)\n")
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "1", "TORCH_CPP_LOG_LEVEL": "FATAL"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("resnetlab.errors.ResNetLabError: could not join the process group (gloo, rank 1 of 2) "
                           "at 127.0.0.1:1") and "--rdzv_endpoint" in last


@pytest.mark.slow
def test_ddp_stream_two_processes_match_one_and_resume_on_one(tree: Path, tmp_path: Path) -> None:
    """torchrun 2 CPU processes x 4 images == 1 process with 2 micro-batches of 4 (same BN groups), on streamed
    data; then the 2-process run's checkpoint at 3 resumes on 1 process."""
    common = ["--model", "resnet8", "--data", str(tree), "--cache-dir", str(tmp_path / "c"), "--no-progress",
              "--recipe", "imagenet_paper"]
    for s in ["batch_size=8", "max_iters=6", "eval_interval=3", "log_interval=3", "crop_size=32",
              "scale_range=36,48", "workers=0", "channels_last=false", "keep_checkpoints=3", "eval_batch_size=9",
              "precision=fp32"]:  # compared to 1e-4 below; "auto" (bf16 here) has its own test
        common += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
                    "-m", "resnetlab.cli", "train", *common, "--out", str(tmp_path / "ddp")],
                   check=True, env=env, capture_output=True, timeout=600)
    assert main(["train", *common, "--out", str(tmp_path / "one"), "--set", "grad_accum=2"]) == 0
    a = load_checkpoint(tmp_path / "ddp" / "checkpoint-0000006.pt")
    b = load_checkpoint(tmp_path / "one" / "checkpoint-0000006.pt")
    assert a["world_size"] == 2 and b["world_size"] == 1
    for k, v in a["model"].items():
        if "running" in k or "num_batches" in k:
            continue  # rank 0's BN running statistics see only its own half of each batch
        torch.testing.assert_close(v, b["model"][k], rtol=1e-4, atol=1e-5, msg=k)
    # Every rank evaluated rank 0's model (the checkpointed one), whatever its own BN statistics were.
    ddp_val = [r["val_error"] for r in read_metrics(tmp_path / "ddp" / "metrics.jsonl") if r["kind"] == "eval"][-1]
    report = evaluate_checkpoint(tmp_path / "ddp" / "checkpoint-0000006.pt", workers=0, progress=False,
                                 out_dir=tmp_path / "eval")
    assert report["images"] == 9 and report["top1_error"] == pytest.approx(ddp_val)

    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "ddp", moved)
    for name in ("checkpoint-0000006.pt", "checkpoint-0000006.pt.sha256", "summary.json"):
        (moved / name).unlink()
    proc = subprocess.run([sys.executable, "-m", "resnetlab.cli", "train", "--resume", str(moved), "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stdout and "checkpoint-0000003.pt" in proc.stdout
    resumed = load_checkpoint(moved / "checkpoint-0000006.pt")
    assert resumed["world_size"] == 1 and resumed["iteration"] == 6
    assert _rows(moved)[:2] == _rows(tmp_path / "ddp")[:2]  # the rows up to the checkpoint are kept
