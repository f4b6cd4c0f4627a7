"""Runs a recipe as its command line would, but SIGKILLs itself when training reaches a given step.

Usage: kill_worker.py KILL_AT_STEP RECIPE_TRAIN_PY [recipe arguments ...]   (KILL_AT_STEP < 0: never)
The kill is a real `SIGKILL` of the process at the start of an optimizer step, as a pre-empted node
would die: no exception handler, no `finally`, no flush.
"""

import os
import runpy
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import transformers

REPO = Path(__file__).resolve().parents[2]


def kill_worker_command(task: str, output_dir: Path, kill_at_step: int, flags: list[str]) -> list[str]:
    """This script and its arguments (no interpreter): `task`'s tiny.yaml with `flags`, seed 3, a checkpoint
    every `--save_steps`, killed at `kill_at_step`. The tests that resume runs share it, so each one's
    uninterrupted, killed and resumed runs differ only in `kill_at_step`."""
    recipe = REPO / "recipes" / task
    return [
        str(Path(__file__)),
        str(kill_at_step),
        str(recipe / "train.py"),
        str(recipe / "configs" / "tiny.yaml"),
        "--output_dir",
        str(output_dir),
        "--save_strategy",
        "steps",
        "--seed",
        "3",
        "--disable_tqdm",
        "true",
        *flags,
    ]


def run_with_step_hook(
    before_step: Callable[[transformers.Trainer], None], train_py: str, recipe_argv: list[str]
) -> None:
    """Runs the recipe `train_py` as its command line would, calling `before_step(trainer)` before every training
    step (the test workers: die at a step, wait for a file)."""
    training_step = transformers.Trainer.training_step

    def hooked_training_step(self, *args, **kwargs):
        before_step(self)
        return training_step(self, *args, **kwargs)

    transformers.Trainer.training_step = hooked_training_step
    sys.argv = [train_py, *recipe_argv]
    runpy.run_path(train_py, run_name="__main__")


def run_and_die_at(kill_at_step: int, train_py: str, recipe_argv: list[str]) -> None:
    def die_at_step(trainer: transformers.Trainer) -> None:
        if trainer.state.global_step == kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)

    run_with_step_hook(die_at_step, train_py, recipe_argv)


if __name__ == "__main__":
    run_and_die_at(int(sys.argv[1]), sys.argv[2], sys.argv[3:])
