"""Runs a recipe as its command line would, but waits at its first training step until a file exists: a run that
is surely still running, holding its `output_dir`, while a test starts another one there.

Usage: waiting_worker.py GO_FILE RECIPE_TRAIN_PY [recipe arguments ...]   (waits 10 minutes at most)
"""

import sys
import time
from pathlib import Path

import transformers

from tests.recipes.kill_worker import run_with_step_hook


def run_waiting_for(go_file: Path, train_py: str, recipe_argv: list[str]) -> None:
    deadline = time.monotonic() + 600

    def wait_for_go_file(trainer: transformers.Trainer) -> None:
        while not go_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    run_with_step_hook(wait_for_go_file, train_py, recipe_argv)


if __name__ == "__main__":
    run_waiting_for(Path(sys.argv[1]), sys.argv[2], sys.argv[3:])
