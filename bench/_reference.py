"""Helpers shared by the benches that compare against transformers 4.x in a second interpreter.

transformers 5.x removed Transformer-XL, so the reference runs in its own virtual environment with an old
`transformers` and the SAME torch release as ours (a different torch would blur the comparison). The venv
is clean (no `--system-site-packages`): the 5.x packages of this environment must not leak into it.
"""

import contextlib
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
import transformers

CACHE_DIR = Path.home() / ".cache" / "finetune-recipes"


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


def default_reference_python(version: str) -> Path:
    """Where `ensure_reference` builds the venv for transformers `version` (outside the repository)."""
    return CACHE_DIR / f"venv-transformers-{version}" / "bin" / "python"


def ensure_reference(python: Path, version: str, *, install: bool, check: str) -> str | None:
    """Returns why the reference interpreter `python` cannot run `check`, or None when it can.

    With `install` and no interpreter yet, first creates its venv and installs into it our exact torch
    release (`torch==X.Y.Z`: an exact pin, so pip takes the build already on disk instead of resolving a
    range to a multi-GB download), then `transformers==version`.
    """
    if not python.exists() and install:
        venv = python.parent.parent
        torch_pin = f"torch=={torch.__version__.split('+')[0]}"
        print(f"building {venv} ({torch_pin}, transformers=={version}) ...", file=sys.stderr, flush=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        for command in (
            [sys.executable, "-m", "venv", str(venv)],
            [*pip, torch_pin],
            [*pip, f"transformers=={version}"],
        ):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                return f"`{' '.join(command)}` failed: {(done.stderr or done.stdout).strip()[-400:]}"
    if not python.exists():
        return f"{python} does not exist (pass --install_reference, or --reference_python)"
    done = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    if done.returncode:
        return f"the reference does not import: {done.stderr.strip()[-400:]}"
    return None
