"""Runs a recipe as its command line would, but waits at its first training step until a file exists: a run that
is surely still running, holding its `output_dir`, while a test starts another one there.

Usage: waiting_worker.py GO_FILE RECIPE_TRAIN_PY [recipe arguments ...]   (waits 10 minutes at most)
"""

import runpy
import sys
import time
from pathlib import Path

import transformers


def run_waiting_for(go_file: Path, train_py: str, recipe_argv: list[str]) -> None:
    training_step = transformers.Trainer.training_step

    def wait_then_step(self, *args, **kwargs):
        deadline = time.monotonic() + 600
        while not go_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return training_step(self, *args, **kwargs)

    transformers.Trainer.training_step = wait_then_step
    sys.argv = [train_py, *recipe_argv]
    runpy.run_path(train_py, run_name="__main__")


if __name__ == "__main__":
    run_waiting_for(Path(sys.argv[1]), sys.argv[2], sys.argv[3:])
