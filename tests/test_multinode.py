"""Multi-node torchrun on one machine: two "nodes" on 127.0.0.1 (c10d rendezvous, one process each), as a new user
would start them, against one process; and what happens when a node never arrives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnetlab.train import load_checkpoint
from resnetlab.train.metrics import read_metrics
from train_utils import free_port, write_image_folder

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process, the same in every run compared below


def _train_args(data: Path, tmp_path: Path) -> list[str]:
    return ["-m", "resnetlab.cli", "train", "--model", "resnet8", "--data", str(data), "--cache-dir",
            str(tmp_path / "cache"), "--no-progress", "--set", "batch_size=16", "--set", "max_iters=32",
            "--set", "eval_interval=16", "--set", "val_size=16", "--set", "milestones=24,28", "--set",
            "precision=fp32", "--set", "threads=1"]


def _node(rank: int, port: int, args: list[str], out: Path, join_timeout: int = 120) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),
         "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
         "--rdzv_conf", f"join_timeout={join_timeout}", *args, "--out", str(out)],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_two_nodes_on_loopback_equal_one_process(tmp_path: Path) -> None:
    """2 nodes x 1 process x 8 images (gloo) == 1 process with 2 micro-batches of 8, exactly: each node computes
    its half's gradient as the one process computes each micro-batch's, and halving is exact in floating point."""
    data = write_image_folder(tmp_path / "data")
    args = _train_args(data, tmp_path)
    subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one"), "--set", "grad_accum=2"], env=ENV,
                   check=True, capture_output=True, timeout=300)
    port = free_port()
    nodes = [_node(r, port, args, tmp_path / "two") for r in (0, 1)]
    logs = [n.communicate(timeout=300)[0].decode() for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], "\n".join(logs)[-3000:]
    a = load_checkpoint(tmp_path / "two" / "checkpoint-0000032.pt")
    b = load_checkpoint(tmp_path / "one" / "checkpoint-0000032.pt")
    assert (a["world_size"], b["world_size"]) == (2, 1)
    for key, value in a["model"].items():  # BN buffers included: both keep the first 8 images' statistics
        assert torch.equal(value, b["model"][key]), key
    evals = [[(r["val_error"], r["test_error"], r["val_loss"]) for r in read_metrics(tmp_path / run / "metrics.jsonl")
              if r["kind"] == "eval"] for run in ("two", "one")]
    assert len(evals[0]) == 2 and evals[0] == evals[1]


@pytest.mark.slow
def test_a_node_that_never_arrives_ends_the_wait_after_the_join_timeout(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "data")
    node = _node(0, free_port(), _train_args(data, tmp_path), tmp_path / "run", join_timeout=5)
    try:
        log = node.communicate(timeout=120)[0].decode()  # with the default join_timeout (600 s) this times out
    finally:
        node.kill()
    assert node.returncode != 0
    assert "RendezvousTimeoutError" in log, log[-2000:]
    assert not (tmp_path / "run" / "config.json").exists()  # nothing was started
