"""The machine a process runs on (``machine``, recorded by runs and results), and process-wide settings the library
chooses for speed, so that users do not have to: the memory allocator here;
the intra-op thread count in ``train.device.set_threads``. ``benchmarks/speed.py`` shows the effect of each.

glibc's malloc hands every block above its (adaptive) mmap threshold to the kernel as fresh pages and unmaps it when
freed, and gives freed heap memory back above 128 KB. A CPU training or inference step allocates and frees the same
activation-sized blocks (4-32 MB at batch 128) every time, so each step pays for page faults and zeroed pages again:
measured here, the fp32 NCHW forward of ResNet-56 ran 1.6x faster with the heap kept, the library's bf16 path 1.04x
(docs, Speed). ``tune_allocator`` keeps blocks up to 32 MB (glibc's largest mmap threshold) on the heap and keeps
freed heap memory for reuse: peak memory is unchanged, but the process does not shrink after its peak.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
from pathlib import Path

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's <malloc.h>
MMAP_THRESHOLD = 32 << 20  # glibc's upper bound for it on 64-bit systems
TRIM_THRESHOLD = 1 << 30

@functools.cache
def tune_allocator() -> bool:
    """Tune glibc malloc for repeated large tensors (once per process); True if it is tuned.

    Skipped where the allocator is not glibc's (other systems, or ``LD_PRELOAD`` of jemalloc/tcmalloc) and when
    ``RESNETLAB_MALLOC=system`` asks for the system's settings.
    """
    if (not sys.platform.startswith("linux") or os.environ.get("RESNETLAB_MALLOC", "") == "system"
            or "malloc" in os.environ.get("LD_PRELOAD", "")):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only (musl has mallopt but no tunables)
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                       TRIM_THRESHOLD))


def machine() -> str:
    """The CPU, its cores, the GPU, Python and PyTorch: what a run's speed and precision depend on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {cores} cores, {gpu}; Python {platform.python_version()}, PyTorch {torch.__version__}"
