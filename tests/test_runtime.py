"""The process settings the library chooses: glibc malloc keeps activation-sized blocks on its heap."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from resnetlab.cli import main

# In a fresh process: tune (or not), then allocate an 8 MB tensor and see whether glibc mapped fresh pages for it
# (mallinfo2().hblkhd: bytes in mmapped blocks).
PROBE = """
import ctypes, torch
from resnetlab.runtime import tune_allocator
tuned = tune_allocator()
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
before = libc.mallinfo2().hblkhd
x = torch.empty(8 << 20, dtype=torch.uint8)
print(tuned, libc.mallinfo2().hblkhd - before >= 8 << 20)
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "True False"),  # tuned: the block comes from the heap, no fresh pages
    ({"RESNETLAB_MALLOC": "system"}, "False True"),  # glibc's defaults: an 8 MB block is mmapped
    ({"LD_PRELOAD": "libnot-a-real-malloc.so"}, "False True"),  # another allocator asked for: left alone
])
def test_tune_allocator_keeps_large_blocks_on_the_heap(env: dict[str, str], expected: str) -> None:
    base = {k: v for k, v in os.environ.items() if k not in ("RESNETLAB_MALLOC", "LD_PRELOAD")}
    proc = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[-2] == expected


def test_cli_applies_the_allocator_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr("resnetlab.cli.tune_allocator", lambda: calls.append(1) or True)
    assert main(["models", "--names-only"]) == 0
    assert calls == [1]
