"""Runs a recipe as its command line would, but when training reaches a given step on the given machine, sends a
signal to every process of that machine: its launcher (`accelerate launch`, which runs torchrun's agent: this
process's parent), every process the launcher started, and itself. `SIGKILL`: the machine is gone, as a machine
pulled from the job; `SIGSTOP`: it is frozen, its connections open but silent, as a machine cut off by the network.

Usage: kill_machine_worker.py AT_STEP MACHINE_RANK SIGNAL RECIPE_TRAIN_PY [recipe arguments ...]   (AT_STEP < 0:
never). The machine is torchrun's `GROUP_RANK`. The workers are not in the launcher's process group (torchrun starts
each in a session of its own), so signalling that group would leave them running: `signal_machine` signals the
launcher's descendants one by one.
"""

import os
import signal
import sys
from pathlib import Path

import psutil
import transformers

from tests.recipes.kill_worker import kill_worker_command, run_with_step_hook


def kill_machine_command(
    task: str, output_dir: Path, at_step: int, machine: int, sig: signal.Signals, flags: list[str]
) -> list[str]:
    """This script and its arguments (no interpreter): `kill_worker_command`'s run, with `sig` sent to every process
    of `machine` at `at_step`."""
    run = kill_worker_command(task, output_dir, -1, flags)[2:]  # from the recipe's train.py on
    return [str(Path(__file__)), str(at_step), str(machine), sig.name, *run]


def signal_machine(launcher_pid: int, sig: signal.Signals) -> None:
    """Sends `sig` to every process the launcher `launcher_pid` started (but the calling one), then to the launcher."""
    launcher = psutil.Process(launcher_pid)
    for process in launcher.children(recursive=True):
        if process.pid != os.getpid():
            process.send_signal(sig)
    launcher.send_signal(sig)


def run_and_signal_machine_at(at_step: int, machine: int, sig: signal.Signals, train_py: str, argv: list[str]) -> None:
    def signal_at_step(trainer: transformers.Trainer) -> None:
        if trainer.state.global_step == at_step and int(os.environ["GROUP_RANK"]) == machine:
            signal_machine(os.getppid(), sig)
            os.kill(os.getpid(), sig)

    run_with_step_hook(signal_at_step, train_py, argv)


if __name__ == "__main__":
    run_and_signal_machine_at(
        int(sys.argv[1]), int(sys.argv[2]), signal.Signals[sys.argv[3]], sys.argv[4], sys.argv[5:]
    )
