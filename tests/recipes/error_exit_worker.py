"""Worker for `tests/recipes/kit/test_command_line.py`, run under `accelerate launch` on 2 processes: a recipe whose
`main` fails with a `ConfigError` after its DDP model has run a collective, through `run_from_command_line`. At exit
(`atexit`, after `sys.exit`, before the interpreter finalizes) each process writes `rank<N>.json` in REPORT_DIR: the
gloo worker threads alive when `main` failed and at exit.

Usage: error_exit_worker.py REPORT_DIR --output_dir OUTPUT_DIR
"""

import atexit
import json
import os
import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from transformers import TrainingArguments

from recipes.kit.command_line import run_from_command_line
from recipes.kit.distributed import gloo_worker_threads
from recipes.kit.errors import ConfigError

report_dir = Path(sys.argv.pop(1))
report = {}


def main(training_args: TrainingArguments) -> dict:
    model = DistributedDataParallel(torch.nn.Linear(4, 1))  # holds the group, as a Trainer's model does
    model(torch.ones(2, 4)).sum().backward()  # a gradient all-reduce on tensors Python owns
    report["when_failing"] = gloo_worker_threads()
    raise ConfigError("a value the user can fix, found after the first step")


@atexit.register
def write_report() -> None:
    report["at_exit"] = gloo_worker_threads()
    (report_dir / f"rank{os.environ['RANK']}.json").write_text(json.dumps(report))  # set by the launcher


run_from_command_line(main, (TrainingArguments,))
