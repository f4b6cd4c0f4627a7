"""Two machines, 1 process each, stood in for on one host (two_machine_runs.py), under DDP (the shipped
`multi_node.yaml`, as the README's commands run it) and FSDP2 (`fsdp_cpu.yaml`), against one machine with the same
2 processes (test_scale_out.py's DDP run, launched once per session; test_fsdp.py holds FSDP to that run too):

- each machine starts its own process ("process R of 2" in machine R's log) and the logged training losses are
  the one machine's (under DDP, which evaluates, the evaluation metrics too);
- the final folder is written once, by machine 0's main process: every process logs at INFO, and the line
  `Trainer` logs when it writes a folder (`Saving model checkpoint to <output_dir>`) is in machine 0's log once
  and not in machine 1's, whose log does hold `Trainer`'s INFO lines (so the check is not blind to machine 1);
- that folder loads through the Auto classes in a clean process, with every weight of the checkpoint of the last
  step (under FSDP: consolidated from the processes' shards);
- under FSDP, both machines relaunched on a copy of the sharded checkpoint of step 2 resume there and reach the
  uninterrupted run's weights (the NCE LM only, to keep CI short);
- `save_on_each_node` with both machines on one output_dir (a shared file system) is refused by the machine that
  comes second to the folder, naming the other machine of this run, not "another run".
"""

import functools
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from tests.recipes.test_fsdp import AUTO_CLASSES
from tests.recipes.two_machine_runs import two_machine_launch
from tests.recipes.two_process_runs import RECIPES, STEPS, logged_losses, run_recipe

CONFIGS = {"ddp": ("multi_node.yaml", []), "fsdp": ("fsdp_cpu.yaml", ["--do_eval", "false", "--save_steps", "2"])}
# Every process at INFO, so that a machine-1 process that wrote the final folder would say so in machine 1's log.
EVERY_PROCESS_LOGS = ["--log_level", "info", "--log_level_replica", "info"]

# Loads the final folder through the Auto class, from the code shipped in it, and checks it holds every weight the
# checkpoint saved; a weight the checkpoint did not save must be tied to one it did.
COMPARE_WITH_CHECKPOINT = """
import sys, torch, transformers
from safetensors.torch import load_file
folder, auto_class, shipped_code, weights = sys.argv[1:]
model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules") == (shipped_code == "yes"), type(model).__module__
state, trained = model.state_dict(), load_file(weights)
for name, tensor in trained.items():
    assert torch.equal(state[name], tensor), name
saved_storage = {state[name].data_ptr() for name in trained}
assert all(tensor.data_ptr() in saved_storage for tensor in state.values()), sorted(set(state) - set(trained))
print("compared", len(trained))
"""


def machine_logs(log: str) -> list[str]:
    """The logs of machine 0 and machine 1 in `two_machine_launch`'s output."""
    return re.split(r"^=== machine \d ===$", log, flags=re.M)[1:]


def final_saves(log: str, folder: Path) -> int:
    """How many times `log` says `Trainer` wrote the final folder `folder` (not a checkpoint inside it)."""
    return len(re.findall(rf"Saving model checkpoint to {re.escape(str(folder))}$", log, flags=re.M))


def checkpoint_weights(checkpoint: Path, workdir: Path) -> Path:
    """A safetensors file of the weights `checkpoint` holds: its `model.safetensors`, or its FSDP shards
    consolidated."""
    if (checkpoint / "model.safetensors").is_file():
        return checkpoint / "model.safetensors"
    dcp_to_torch_save(checkpoint / "pytorch_model_fsdp_0", workdir / "consolidated.pt")
    save_file(torch.load(workdir / "consolidated.pt")["model"], workdir / "consolidated.safetensors")
    return workdir / "consolidated.safetensors"


def relaunched_from_step_2(
    task: str, folder: Path, processes: int, extra: list[str], config_file: str
) -> tuple[Path, str]:
    """Both machines (`processes` in all) relaunched on a copy of `folder`'s checkpoint-2, in a folder beside it:
    that folder and the machines' log."""
    resumed = folder.with_name(f"{folder.name}_resumed")
    shutil.copytree(folder / "checkpoint-2", resumed / "checkpoint-2")
    return resumed, run_recipe(two_machine_launch, task, resumed, processes, extra, config_file=config_file)


@pytest.mark.slow
@pytest.mark.parametrize("layout", sorted(CONFIGS))
@pytest.mark.parametrize("task", ["nce_lm", "sentiment"])
def test_two_machines_train_save_once_and_load_like_one(
    tmp_path, task, layout, session_tokenizer, two_process_ddp_run, clean_process
):
    config_file, flags = CONFIGS[layout]
    one_machine, _ = two_process_ddp_run(task)
    folder = tmp_path / "two_machines"
    extra = [*session_tokenizer(task), *EVERY_PROCESS_LOGS, *flags]
    logs = machine_logs(run_recipe(two_machine_launch, task, folder, 2, extra, config_file=config_file))

    for rank, log in enumerate(logs):
        assert re.search(rf"process {rank} of 2\b", log), f"machine {rank} started no process {rank}"
    if layout == "fsdp":
        assert "FSDP on 2 CPU processes" in logs[0]
    # The same function on the same batches; gradients reduced in another order: float noise only.
    assert logged_losses(folder) == pytest.approx(logged_losses(one_machine), rel=1e-4)
    if layout == "ddp":  # evaluation gathers across the machines: the whole validation set once, as on one
        expected, metrics = (json.loads((f / "eval_results.json").read_text()) for f in (one_machine, folder))
        for metric in RECIPES[task][1]:
            assert metrics[metric] == pytest.approx(expected[metric], rel=1e-4), metric
    assert "***** Running training *****" in logs[1]  # machine 1's Trainer logs at INFO: a save there would show
    assert [final_saves(log, folder) for log in logs] == [1, 0]

    checkpoint = folder / f"checkpoint-{STEPS}"
    result = clean_process(
        COMPARE_WITH_CHECKPOINT,
        str(folder),
        *AUTO_CLASSES[task],
        str(checkpoint_weights(checkpoint, tmp_path)),
        cwd=tmp_path,
    )
    assert result.stdout.startswith("compared")

    if layout == "fsdp" and task == "nce_lm":
        resumed, log = relaunched_from_step_2(task, folder, 2, extra, config_file)
        assert "resuming from" in log and "checkpoint-2" in log
        assert (
            logged_losses(resumed)[2:] == logged_losses(folder)[2:]
        )  # steps 3 and 4; 1 and 2 come from the checkpoint
        expected, actual = load_file(folder / "model.safetensors"), load_file(resumed / "model.safetensors")
        assert expected.keys() == actual.keys()
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], atol=0, rtol=0, msg=key)


@pytest.mark.slow
def test_save_on_each_node_on_a_shared_folder_is_refused_naming_the_other_machine(tmp_path):
    folder = tmp_path / "shared"
    launch = functools.partial(two_machine_launch, check=False)  # both machines stop: one refuses, one loses it
    logs = machine_logs(run_recipe(launch, "nce_lm", folder, 2, ["--save_on_each_node", "true"]))
    refusals = [
        (rank, line) for rank, log in enumerate(logs) for line in log.splitlines() if "is shared with machine" in line
    ]
    assert len(refusals) == 1, "\n".join(log[-3000:] for log in logs)
    rank, line = refusals[0]
    assert line.startswith(f"error: output_dir {folder} is shared with machine {1 - rank} of this run (on "), line
    assert not any("in use by another run" in log for log in logs)


def test_the_table_script_of_every_recipe_imports_and_compares_losses():
    from tests.recipes.two_machine_table import largest_relative_difference  # the script stays importable

    assert largest_relative_difference([1.0, 2.2], [1.0, 2.0]) == pytest.approx(0.1)
    assert largest_relative_difference([1.0], [1.0, 2.0]) == float("inf")  # other steps logged: not comparable
