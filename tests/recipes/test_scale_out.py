"""Every recipe under `accelerate launch` with two real CPU processes (gloo): the world size is 2, the
logged training loss equals the loss one process logs on the same global batch (no doubling, no
half-batch means), evaluation sees the whole validation set once, and the run saves a loadable model.

The global batch is 8 examples in every layout: 1 process x 8, 2 processes x 4, and 2 processes x 2 x 2
micro-batches of gradient accumulation. Accelerate hands the ranks consecutive slices of the batches one
process would draw, so every layout sees the same examples at every step. (Transformer-XL is left out of
the accumulation layout: there a micro-batch advances the streams, so it is a different schedule, tested
in test_transformer_xl.py.) Dropout is off so the runs compute the same function; the NCE recipe trains
with `loss_type=full` here because its noise is drawn per rank by design (its 2-process `nce` run is
checked on its own below).
"""

import json
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_overrides

REPO = Path(__file__).resolve().parents[2]

# Per recipe: flags that make it small and deterministic, and the evaluation metrics to compare.
RECIPES = {
    "sentiment": (
        [
            *tiny_overrides("sentiment", dropout=False),
            "--mlp_dropout",
            "0",
            "--load_best_model_at_end",
            "false",
            "--eval_strategy",
            "no",
        ],
        ["eval_loss", "eval_accuracy", "eval_macro_f1"],
    ),
    "closed_book_qa": (
        [
            *tiny_overrides("closed_book_qa", dropout=False),
            "--max_eval_samples",
            "9",
            "--max_new_tokens",
            "3",
        ],
        ["eval_exact_match", "eval_f1", "eval_samples"],
    ),
    "nce_lm": (
        [
            *tiny_overrides("nce_lm", dropout=False),
            "--loss_type",
            "full",
            "--block_size",
            "32",
        ],
        ["eval_loss", "eval_perplexity"],
    ),
    "transformer_xl": (
        [
            *tiny_overrides("transformer_xl", dropout=False),
            "--tgt_len",
            "16",
            "--mem_len",
            "16",
            "--eval_tgt_len",
            "16",
            "--eval_mem_len",
            "32",
        ],
        ["eval_loss", "eval_tokens"],
    ),
}
STEPS = 4


def run_recipe(
    launch,
    task: str,
    output_dir: Path,
    processes: int,
    extra: list[str],
    accumulation: int = 1,
    config_file: str = "cpu_multi.yaml",
) -> str:
    recipe = REPO / "recipes" / task
    flags, _ = RECIPES[task]
    per_device = str(8 // processes // accumulation)
    return launch(
        recipe / "train.py",
        str(recipe / "configs" / "tiny.yaml"),
        "--output_dir",
        str(output_dir),
        "--max_steps",
        str(STEPS),
        "--logging_steps",
        "1",
        "--save_strategy",
        "steps",
        "--save_steps",
        str(STEPS),
        "--per_device_train_batch_size",
        per_device,
        "--per_device_eval_batch_size",
        per_device,
        "--gradient_accumulation_steps",
        str(accumulation),
        "--seed",
        "7",
        "--disable_tqdm",
        "true",
        *flags,
        *extra,
        num_processes=processes,
        config_file=config_file,
    )


def logged_losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(RECIPES))
def test_two_processes_log_the_loss_one_process_logs(tmp_path, task, launch, shared_tokenizer):
    extra = shared_tokenizer(task, tmp_path)
    layouts = {
        "1x8": {"processes": 1},
        "2x4": {"processes": 2},
        "2x2x2": {"processes": 2, "accumulation": 2},
    }
    if task == "transformer_xl":
        del layouts["2x2x2"]
    logs = {name: run_recipe(launch, task, tmp_path / name, extra=extra, **layout) for name, layout in layouts.items()}
    _, compared = RECIPES[task]
    expected_losses = logged_losses(tmp_path / "1x8")
    expected_metrics = json.loads((tmp_path / "1x8" / "eval_results.json").read_text())
    assert len(expected_losses) == STEPS and re.search(r"process 0 of 1\b", logs["1x8"])
    for name, layout in layouts.items():
        assert re.search(rf"process 0 of {layout['processes']}\b", logs[name]), name
        # Step 1 is the same weights on the same batch; later steps also check that the averaged gradient
        # moved every run to the same weights (float sums in another order: tiny differences only).
        assert logged_losses(tmp_path / name) == pytest.approx(expected_losses, rel=1e-4), name
        metrics = json.loads((tmp_path / name / "eval_results.json").read_text())
        for metric in compared:
            assert metrics[metric] == pytest.approx(expected_metrics[metric], rel=1e-4), (name, metric)
        assert (tmp_path / name / "model.safetensors").is_file() and (tmp_path / name / "config.json").is_file()

    # bf16 autocast (on CPU here, as on a GPU that supports it), 2 processes: the same first-step loss up
    # to bf16 rounding, finite losses and metrics throughout.
    run_recipe(launch, task, tmp_path / "bf16", 2, [*extra, "--bf16", "true"])
    bf16_losses = logged_losses(tmp_path / "bf16")
    assert bf16_losses[0] == pytest.approx(expected_losses[0], rel=2e-2) and all(map(math.isfinite, bf16_losses))
    metrics = json.loads((tmp_path / "bf16" / "eval_results.json").read_text())
    assert all(math.isfinite(metrics[metric]) for metric in compared)


@pytest.mark.slow
def test_nce_ranks_draw_their_own_noise_and_checkpoint_it(tmp_path, launch):
    """With `loss_type=nce` each rank draws its own noise (seed + rank) and saves its own generator state,
    so a resumed 2-process run continues both noise streams."""
    log = run_recipe(launch, "nce_lm", tmp_path / "nce", 2, ["--loss_type", "nce"])
    assert re.search(r"process 0 of 2\b", log)
    checkpoint = tmp_path / "nce" / f"checkpoint-{STEPS}"
    states = [load_file(checkpoint / f"noise_generator_rank{rank}.safetensors")["state"] for rank in (0, 1)]
    assert not torch.equal(states[0], states[1])
    metrics = json.loads((tmp_path / "nce" / "eval_results.json").read_text())
    assert math.isfinite(metrics["eval_perplexity"]) and metrics["eval_tokens"] > 0
