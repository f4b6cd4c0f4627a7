"""A run killed hard (SIGKILL) after a checkpoint resumes with the same command and ends where an
uninterrupted run ends: same final weights (atol 1e-6), same number of steps."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.recipes.kill_worker import kill_worker_command

RUNS = {
    "sentiment": [
        "--max_steps",
        "30",
        "--save_steps",
        "10",
        "--eval_strategy",
        "no",
        "--load_best_model_at_end",
        "false",
    ],
    "closed_book_qa": ["--max_steps", "30", "--save_steps", "10", "--per_device_train_batch_size", "8"],
    # Dropout on and noise drawn every step: the resumed run must restore both RNG streams.
    "nce_lm": [
        "--max_steps",
        "30",
        "--save_steps",
        "10",
        "--eval_strategy",
        "no",
        "--per_device_train_batch_size",
        "8",
    ],
    "transformer_xl": [
        "--max_steps",
        "30",
        "--save_steps",
        "10",
        "--logging_steps",
        "5",
        "--eval_strategy",
        "no",
        "--per_device_train_batch_size",
        "4",
        "--tgt_len",
        "16",
        "--mem_len",
        "16",
    ],
}


def run(task: str, output_dir: Path, kill_at_step: int, extra: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, *kill_worker_command(task, output_dir, kill_at_step, [*RUNS[task], *extra])]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env={"HF_HUB_OFFLINE": "1", **_env()})


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "LOCAL_RANK", "WORLD_SIZE"))}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(RUNS))
def test_sigkill_then_rerun_matches_an_uninterrupted_run(tmp_path, task, shared_tokenizer):
    extra = shared_tokenizer(task, tmp_path)
    straight = run(task, tmp_path / "straight", kill_at_step=-1, extra=extra)
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed = run(task, tmp_path / "resumed", kill_at_step=15, extra=extra)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "resumed" / "checkpoint-10").is_dir() and not (
        tmp_path / "resumed" / "model.safetensors"
    ).exists()
    if task == "nce_lm":  # each rank's noise generator is checkpointed, so the resumed run redraws the same noise
        assert (tmp_path / "resumed" / "checkpoint-10" / "noise_generator_rank0.safetensors").is_file()
    resumed = run(task, tmp_path / "resumed", kill_at_step=-1, extra=extra)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and "checkpoint-10" in resumed.stderr

    state = json.loads((tmp_path / "resumed" / "checkpoint-30" / "trainer_state.json").read_text())
    assert state["global_step"] == 30
    expected, actual = (load_file(tmp_path / name / "model.safetensors") for name in ("straight", "resumed"))
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=1e-6, rtol=0, msg=lambda m, key=key: f"{key}: {m}")
