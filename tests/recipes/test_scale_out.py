"""Every recipe under `accelerate launch` with two real CPU processes (gloo): the world size is 2, the
logged training loss equals the loss one process logs on the same global batch (no doubling, no
half-batch means), evaluation sees the whole validation set once, and the run saves a loadable model.

The runs are two_process_runs.py's. Accelerate hands the ranks consecutive slices of the batches one
process would draw, so every layout sees the same examples at every step. (Transformer-XL is left out of
the accumulation layout: there a micro-batch advances the streams, so it is a different schedule, tested
in test_transformer_xl.py.) The NCE recipe's 2-process `nce` run is checked on its own below.
"""

import json
import math
import re

import pytest
import torch
from safetensors.torch import load_file

from tests.recipes.two_process_runs import RECIPES, STEPS, logged_losses, run_recipe


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(RECIPES))
def test_two_processes_log_the_loss_one_process_logs(tmp_path, task, launch, session_tokenizer, two_process_ddp_run):
    extra = session_tokenizer(task)
    layouts = {
        "1x8": {"processes": 1},
        "2x4": {"processes": 2},
        "2x2x2": {"processes": 2, "accumulation": 2},
    }
    if task == "transformer_xl":
        del layouts["2x2x2"]
    folders = {name: tmp_path / name for name in layouts}
    logs = {}
    folders["2x4"], logs["2x4"] = two_process_ddp_run(task)  # shared with test_fsdp.py
    for name, layout in layouts.items():
        if name not in logs:
            logs[name] = run_recipe(launch, task, folders[name], extra=extra, **layout)
    _, compared = RECIPES[task]
    expected_losses = logged_losses(folders["1x8"])
    expected_metrics = json.loads((folders["1x8"] / "eval_results.json").read_text())
    assert len(expected_losses) == STEPS and re.search(r"process 0 of 1\b", logs["1x8"])
    for name, layout in layouts.items():
        assert re.search(rf"process 0 of {layout['processes']}\b", logs[name]), name
        # Step 1 is the same weights on the same batch; later steps also check that the averaged gradient
        # moved every run to the same weights (float sums in another order: tiny differences only).
        assert logged_losses(folders[name]) == pytest.approx(expected_losses, rel=1e-4), name
        metrics = json.loads((folders[name] / "eval_results.json").read_text())
        for metric in compared:
            assert metrics[metric] == pytest.approx(expected_metrics[metric], rel=1e-4), (name, metric)
        assert (folders[name] / "model.safetensors").is_file() and (folders[name] / "config.json").is_file()

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
