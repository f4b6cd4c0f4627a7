"""Every recipe under FSDP2 (`recipes/accelerate_configs/fsdp_cpu.yaml`: `fully_shard`, one shard group per
layer, on two CPU processes over gloo), launched as users launch it: the same losses as DDP on the same
global batch, each process holding about half of every parameter, a sharded checkpoint during training, a
final folder in one piece that loads through the Auto classes in a clean process, and a run killed hard
(SIGKILL) that resumes from its sharded checkpoint to the weights of the uninterrupted run.

The runs are two_process_runs.py's (tiny models, dropout off, 4 steps of 8 examples), the FSDP ones with
evaluation off; the DDP run is test_scale_out.py's, launched once per session.
"""

import json
import re
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.recipes.kill_worker import kill_worker_command
from tests.recipes.two_process_runs import RECIPES, STEPS, logged_losses, run_recipe

FSDP = "fsdp_cpu.yaml"
# The Auto class each final folder loads through, and whether its class comes from code shipped in the folder
# (closed-book QA trains transformers' own GPT-2).
AUTO_CLASSES = {
    "sentiment": ("AutoModelForSequenceClassification", "yes"),
    "closed_book_qa": ("AutoModelForCausalLM", "no"),
    "nce_lm": ("AutoModelForCausalLM", "yes"),
    "transformer_xl": ("AutoModelForCausalLM", "yes"),
}

# Loads the final folder through the Auto class, from the code shipped in it, and checks every weight
# against the sharded checkpoint of the same step, consolidated here from the processes' shards.
_COMPARE_WITH_SHARDS = """
import sys, torch, transformers
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
folder, auto_class, shipped_code, shards, consolidated = sys.argv[1:]
model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True)
shipped = type(model).__module__.startswith("transformers_modules")
assert shipped == (shipped_code == "yes"), type(model).__module__
dcp_to_torch_save(shards, consolidated)
trained = torch.load(consolidated)["model"]
for name, tensor in model.state_dict().items():
    assert torch.equal(tensor, trained[name]), name
print("compared", len(model.state_dict()))
"""


def parameters_held(log: str) -> tuple[list[int], int]:
    """The per-process parameter counts `recipes.kit.callbacks.ParameterShareLogger` logged, and the total."""
    match = re.search(r"parameters held per process: \[([\d, ]+)\] of (\d+)", log)
    assert match, "no 'parameters held per process' line in the log"
    return [int(n) for n in match.group(1).split(",")], int(match.group(2))


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(RECIPES))
def test_fsdp_trains_like_ddp_on_half_the_parameters(
    tmp_path, task, launch, session_tokenizer, two_process_ddp_run, clean_process
):
    # Each process must tokenize alike: under FSDP ranks with different vocabularies fail in the first gather.
    # The DDP run (shared with test_scale_out.py) also evaluates at its end; evaluation comes after the last
    # logged training loss, so it changes none of the losses compared here.
    ddp_folder, ddp_log = two_process_ddp_run(task)
    fsdp_log = run_recipe(
        launch, task, tmp_path / "fsdp", 2, [*session_tokenizer(task), "--do_eval", "false"], config_file=FSDP
    )

    assert re.search(r"process 0 of 2\b", fsdp_log) and "FSDP on 2 CPU processes" in fsdp_log
    ddp_held, total = parameters_held(ddp_log)
    fsdp_held, fsdp_total = parameters_held(fsdp_log)
    assert ddp_held == [total, total]
    # The same model (a tied output table is still one parameter), split in two by rows (padding aside).
    assert fsdp_total == total and sum(fsdp_held) == total
    assert all(abs(held - total / 2) <= 0.05 * total for held in fsdp_held), fsdp_held
    # The same function on the same batches; gradients reduced in another order: float noise only.
    assert logged_losses(tmp_path / "fsdp") == pytest.approx(logged_losses(ddp_folder), rel=1e-4)

    checkpoint = tmp_path / "fsdp" / f"checkpoint-{STEPS}"
    assert sorted(p.name for p in (checkpoint / "pytorch_model_fsdp_0").glob("*.distcp")) == [
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    assert not (checkpoint / "model.safetensors").exists()
    final = tmp_path / "fsdp"
    assert (final / "model.safetensors").is_file() and not list(final.glob("_fsdp*.py"))
    result = clean_process(
        _COMPARE_WITH_SHARDS,
        str(final),
        *AUTO_CLASSES[task],
        str(checkpoint / "pytorch_model_fsdp_0"),
        str(tmp_path / "consolidated.pt"),
        cwd=tmp_path,
    )
    assert result.stdout.startswith("compared")


# NCE: dropout on and noise drawn per process every step, so the resumed run must restore both RNG streams
# and each process's noise generator (recipes/kit/callbacks.py); the output table is tied to the input one.
RESUME_FLAGS = ["--max_steps", "6", "--save_steps", "2", "--do_eval", "false", "--per_device_train_batch_size", "4"]


def run_nce_until(launch, output_dir: Path, kill_at_step: int) -> str:
    flags = ["--config_overrides", "n_layer=1,n_embd=32,n_head=2,n_positions=64", *RESUME_FLAGS]
    return launch(
        *kill_worker_command("nce_lm", output_dir, kill_at_step, flags), config_file=FSDP, check=kill_at_step < 0
    )


@pytest.mark.slow
def test_fsdp_run_killed_by_sigkill_resumes_to_the_uninterrupted_weights(tmp_path, launch):
    run_nce_until(launch, tmp_path / "straight", kill_at_step=-1)
    killed = run_nce_until(launch, tmp_path / "resumed", kill_at_step=3)
    assert f"Signal {int(signal.SIGKILL)} (SIGKILL)" in killed or "SIGKILL" in killed
    checkpoint = tmp_path / "resumed" / "checkpoint-2"
    assert (checkpoint / "pytorch_model_fsdp_0").is_dir() and (checkpoint / "optimizer_0").is_dir()
    assert (checkpoint / "noise_generator_rank1.safetensors").is_file()
    assert not (tmp_path / "resumed" / "model.safetensors").exists()

    resumed = run_nce_until(launch, tmp_path / "resumed", kill_at_step=-1)
    assert "resuming from" in resumed and "checkpoint-2" in resumed
    state = json.loads((tmp_path / "resumed" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    expected, actual = (load_file(tmp_path / name / "model.safetensors") for name in ("straight", "resumed"))
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=1e-6, rtol=0, msg=lambda m, key=key: f"{key}: {m}")
