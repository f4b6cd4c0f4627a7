"""The two-machine table of #32 item 1, for every recipe: `python -m tests.recipes.two_machine_table` (from the
repository root; about 15 minutes alone on 2 cores). Not collected by pytest: test_two_machines.py asserts the same
for the NCE LM and sentiment in CI; this prints what it checks for all four recipes, with 1 and 2 processes a machine.

Each row is one tiny run (two_process_runs.py: dropout off, the same global batch of 8, 4 steps) on two machines
stood in for on one host (two_machine_runs.py) against one machine with the same total number of processes and the
same accelerate config family (DDP: `multi_node.yaml` vs `cpu_multi.yaml`; FSDP2: `fsdp_cpu.yaml` on both). Columns:
the largest relative difference of the logged training losses (target <= 1e-4), how many times each machine wrote
the final folder (target: machine 0 once, machine 1 never), whether that folder loads through its Auto class in a
clean process with every weight of the last checkpoint, and, under FSDP, whether both machines relaunched on the
sharded checkpoint of step 2 end at the uninterrupted run's weights (largest absolute difference).
"""

import argparse
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.conftest import accelerate_launch, run_in_clean_process, shared_tokenizer_args
from tests.recipes.test_fsdp import AUTO_CLASSES
from tests.recipes.test_two_machines import (
    COMPARE_WITH_CHECKPOINT,
    CONFIGS,
    EVERY_PROCESS_LOGS,
    checkpoint_weights,
    final_saves,
    machine_logs,
    relaunched_from_step_2,
)
from tests.recipes.two_machine_runs import two_machine_launch
from tests.recipes.two_process_runs import RECIPES, STEPS, largest_difference, logged_losses, run_recipe

#: The one-machine config each layout is compared with (the two machines run CONFIGS' config).
ONE_MACHINE_CONFIG = {"ddp": "cpu_multi.yaml", "fsdp": "fsdp_cpu.yaml"}


def largest_relative_difference(actual: list[float], expected: list[float]) -> float:
    """max |a - e| / |e| over the steps; infinity when the runs logged different numbers of steps."""
    if len(actual) != len(expected):
        return float("inf")
    return max(abs(a - e) / abs(e) for a, e in zip(actual, expected, strict=True))


def resumed_difference(task: str, folder: Path, processes: int, extra: list[str], config_file: str) -> float:
    """The largest absolute weight difference from `folder` (the uninterrupted run) of both machines relaunched on
    its checkpoint-2 (`relaunched_from_step_2`)."""
    resumed, _ = relaunched_from_step_2(task, folder, processes, extra, config_file)
    expected, actual = load_file(folder / "model.safetensors"), load_file(resumed / "model.safetensors")
    return largest_difference(actual, expected)


def table_row(task: str, layout: str, per_machine: int, workdir: Path) -> str:
    """One row of the table (module docstring) for `task` under `layout`, `per_machine` processes a machine."""
    config_file, flags = CONFIGS[layout]
    extra = [*shared_tokenizer_args(task, workdir), *EVERY_PROCESS_LOGS, *flags]
    total = 2 * per_machine
    one, two = workdir / f"one_machine_x{total}", workdir / f"two_machines_x{per_machine}"
    run_recipe(accelerate_launch, task, one, total, extra, config_file=ONE_MACHINE_CONFIG[layout])
    logs = machine_logs(run_recipe(two_machine_launch, task, two, total, extra, config_file=config_file))
    losses_one, losses_two = logged_losses(one), logged_losses(two)
    saves = [final_saves(log, two) for log in logs]
    compared = run_in_clean_process(
        COMPARE_WITH_CHECKPOINT,
        str(two),
        *AUTO_CLASSES[task],
        str(checkpoint_weights(two / f"checkpoint-{STEPS}", workdir)),
        cwd=workdir,
    )
    resumed = f"{resumed_difference(task, two, total, extra, config_file):.1e}" if layout == "fsdp" else "-"
    losses = ", ".join(f"{loss:.4f}" for loss in losses_two)
    return (
        f"| {task} | {layout} | 2 x {per_machine} | {losses} | "
        f"{largest_relative_difference(losses_two, losses_one):.1e} | {saves[0]} / {saves[1]} | "
        f"{'yes' if compared.stdout.startswith('compared') else 'no'} | {resumed} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=sorted(RECIPES), choices=sorted(RECIPES))
    parser.add_argument("--layouts", nargs="+", default=sorted(CONFIGS), choices=sorted(CONFIGS))
    parser.add_argument("--per_machine", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        "| recipe | layout | machines x processes | two-machine losses, steps 1-4 | largest relative difference "
        "from one machine | final folder written by machine 0 / 1 | loads in a clean process | FSDP resumed from "
        "step 2: largest weight difference |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for task in args.tasks:
        for layout in args.layouts:
            for per_machine in args.per_machine:
                with tempfile.TemporaryDirectory(prefix=f"two-machines-{task}-{layout}-") as workdir:
                    print(table_row(task, layout, per_machine, Path(workdir)), flush=True)


if __name__ == "__main__":
    main()
