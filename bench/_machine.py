"""The line above every bench table naming the machine it ran on."""

import contextlib
import datetime
import os
import platform
from pathlib import Path

import torch
import transformers


def machine_line() -> str:
    """One line naming the machine, thread count, library versions and time, printed above every table."""
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"machine: nproc {len(os.sched_getaffinity(0))}, {cpu}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}; "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}"
    )
