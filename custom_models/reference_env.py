"""The side environment with transformers 4.x in which the Transformer-XL reference runs.

transformers 5.x removed Transformer-XL, so whatever compares our `custom_models.transfo_xl` against the 4.x
`TransfoXLLMHeadModel` runs the latter in a second interpreter: a virtual environment with an old
`transformers` and the SAME torch release as ours (a different torch would blur the comparison). The venv is
clean (no `--system-site-packages`): the 5.x packages of this environment must not leak into it.

Two kinds of callers build it: the benches (`bench/transfo_xl.py`, `bench/transfo_xl_legacy.py`, run as
`python bench/<name>.py`) and the fixture script (`tests/reference/make_transfo_xl_fixtures.py`). Both see
this installed package and nothing else of the repository without a `sys.path` edit, so the builder lives
here, once, outside any model folder (nothing here ships with a model's Hub code). It imports only the
standard library and torch; nothing in `custom_models` imports it.
"""

import subprocess
import sys
from pathlib import Path

import torch

CACHE_DIR = Path.home() / ".cache" / "finetune-recipes"


def default_reference_python(version: str) -> Path:
    """Where `ensure_reference` builds the venv for transformers `version` (outside the repository).

    Args:
        version: the transformers release, e.g. "4.34.1".
    Returns:
        the path of that venv's `bin/python` (which may not exist yet).
    """
    return CACHE_DIR / f"venv-transformers-{version}" / "bin" / "python"


def ensure_reference(python: Path, version: str, *, install: bool, check: str) -> str | None:
    """Makes sure the reference interpreter `python` can run the Python source `check`.

    With `install` and no interpreter yet, first creates its venv and installs into it our exact torch
    release (`torch==X.Y.Z`: an exact pin, so pip takes the build already on disk instead of resolving a
    range to a multi-GB download), then `transformers==version`.

    Args:
        python: the venv's interpreter, e.g. `default_reference_python(version)`.
        version: the transformers release to install.
        install: build the venv when `python` does not exist.
        check: source code run by `python -c`; a non-zero exit means the reference is unusable.
    Returns:
        None when the interpreter runs `check`, otherwise one line saying why not (a failed pip command,
        a missing interpreter, the end of the check's stderr). Never raises for these cases.
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
