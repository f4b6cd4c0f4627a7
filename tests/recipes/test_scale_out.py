"""Every recipe under `accelerate launch` with two real CPU processes (gloo): the world size is 2, the
logged training loss equals the loss one process logs on the same global batch (no doubling, no
half-batch means), evaluation sees the whole validation set once, and the run saves a loadable model.

One process runs `per_device_train_batch_size` 2b, two run b each: accelerate hands rank r the r-th half
of the global batch one process would draw, so both runs see the same examples at every step. Dropout is
off so the two runs compute the same function; the NCE recipe trains with `loss_type=full` here because
its noise is drawn per rank by design (its 2-process `nce` run is checked on its own below).
"""

import json
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]

# Per recipe: flags that make it small and deterministic, and the evaluation metrics to compare.
RECIPES = {
    "sentiment": (
        [
            "--config_overrides", "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,"
            "max_position_embeddings=64,hidden_dropout_prob=0,attention_probs_dropout_prob=0",
            "--mlp_dropout", "0", "--load_best_model_at_end", "false", "--eval_strategy", "no",
        ],
        ["eval_loss", "eval_accuracy", "eval_macro_f1"],
    ),
    "closed_book_qa": (
        [
            "--config_overrides", "n_embd=32,n_layer=1,n_head=2,n_positions=64,resid_pdrop=0,embd_pdrop=0,attn_pdrop=0",
            "--max_eval_samples", "9", "--max_new_tokens", "3",
        ],
        ["eval_exact_match", "eval_f1", "eval_samples"],
    ),
    "nce_lm": (
        [
            "--config_overrides", "n_layer=1,n_embd=32,n_head=2,n_positions=64,resid_pdrop=0,embd_pdrop=0,attn_pdrop=0",
            "--loss_type", "full", "--block_size", "32",
        ],
        ["eval_loss", "eval_perplexity"],
    ),
    "transformer_xl": (
        [
            "--config_overrides", "n_layer=1,d_model=32,d_embed=32,n_head=2,d_head=16,d_inner=64,dropout=0,dropatt=0",
            "--tgt_len", "16", "--mem_len", "16", "--eval_tgt_len", "16", "--eval_mem_len", "32",
        ],
        ["eval_loss", "eval_tokens"],
    ),
}  # fmt: skip
STEPS = 4


def run_recipe(launch, task: str, output_dir: Path, num_processes: int, extra: list[str]) -> str:
    recipe = REPO / "recipes" / task
    flags, _ = RECIPES[task]
    per_device = str(8 // num_processes)
    return launch(
        recipe / "train.py", str(recipe / "configs" / "tiny.yaml"), "--output_dir", str(output_dir),
        "--max_steps", str(STEPS), "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", str(STEPS),
        "--per_device_train_batch_size", per_device, "--per_device_eval_batch_size", per_device,
        "--seed", "7", "--disable_tqdm", "true", *flags, *extra, num_processes=num_processes,
    )  # fmt: skip


def logged_losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(RECIPES))
def test_two_processes_log_the_loss_one_process_logs(tmp_path, task, launch, shared_tokenizer):
    extra = shared_tokenizer(task, tmp_path)
    logs = {n: run_recipe(launch, task, tmp_path / f"procs{n}", n, extra) for n in (1, 2)}
    assert re.search(r"process 0 of 1\b", logs[1]) and re.search(r"process 0 of 2\b", logs[2])

    one, two = logged_losses(tmp_path / "procs1"), logged_losses(tmp_path / "procs2")
    assert len(one) == len(two) == STEPS
    # Step 1 is the same weights on the same batch; later steps also check that the averaged gradient
    # moved both runs to the same weights (float sums in another order: tiny differences only).
    assert two == pytest.approx(one, rel=1e-4), (one, two)

    _, compared = RECIPES[task]
    metrics = {n: json.loads((tmp_path / f"procs{n}" / "eval_results.json").read_text()) for n in (1, 2)}
    for name in compared:
        assert metrics[2][name] == pytest.approx(metrics[1][name], rel=1e-4), name
    assert (tmp_path / "procs2" / "model.safetensors").is_file() and (tmp_path / "procs2" / "config.json").is_file()


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
