"""The tiny recipe runs that test_scale_out.py and test_fsdp.py launch and compare: small, deterministic, the
same global batch of 8 examples in every layout (1 process x 8, 2 processes x 4, 2 processes x 2 x 2
micro-batches of gradient accumulation), 4 steps, a checkpoint at the last one.

Dropout is off so the runs compute the same function; the NCE recipe trains with `loss_type=full` because
its noise is drawn per rank by design.
"""

import json
from pathlib import Path

import torch

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
    """Launches `task`'s tiny run in `output_dir` on `processes` processes and returns their log."""
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


def largest_difference(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference between two state dicts with the same keys."""
    return max((actual[key] - expected[key]).abs().max().item() for key in expected)
