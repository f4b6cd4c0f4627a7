"""Runs a recipe as its command line would, but SIGKILLs itself when training reaches a given step.

Usage: kill_worker.py KILL_AT_STEP RECIPE_TRAIN_PY [recipe arguments ...]   (KILL_AT_STEP < 0: never)
The kill is a real `SIGKILL` of the process at the start of an optimizer step, as a pre-empted node
would die: no exception handler, no `finally`, no flush.
"""

import os
import runpy
import signal
import sys

import transformers

kill_at_step, train_py, recipe_argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
training_step = transformers.Trainer.training_step


def training_step_or_die(self, *args, **kwargs):
    if self.state.global_step == kill_at_step:
        os.kill(os.getpid(), signal.SIGKILL)
    return training_step(self, *args, **kwargs)


transformers.Trainer.training_step = training_step_or_die
sys.argv = [train_py, *recipe_argv]
runpy.run_path(train_py, run_name="__main__")
