"""A checkpoint resumed on another number of processes, with the same global batch of 8 (two_process_runs.py's
tiny runs, dropout off).

Sentiment, closed-book QA, the NCE LM with `loss_type=full` and Transformer-XL end with the weights a resume on the
original count ends with: the data order is the seeded sampler's (Transformer-XL: the streams of the global batch,
whose memory is re-split by rows), and with dropout off nothing draws from the RNG states `Trainer` restores only
per process (`rng_state_<process>.pth`). The NCE LM's noise (`nce`, `ranking`) comes from one generator per
process, seeded by its rank, so no run on another count draws the same noise: the resumed run says so in one line
(and a resume on the same count does not).
"""

import re

import pytest
import torch
from safetensors.torch import load_file

from tests.recipes.two_process_runs import STEPS, run_recipe

# The extra steps each resumed run trains past the checkpoint it resumes from.
RESUMED_STEPS = 2


def resume(launch, task: str, checkpoint, output_dir, processes: int, extra: list[str]) -> str:
    """Resumes `task`'s tiny run from `checkpoint` on `processes` processes for `RESUMED_STEPS` more steps, writing
    into `output_dir` (no evaluation: the weights are compared); returns the log."""
    flags = [
        "--resume_from_checkpoint",
        str(checkpoint),
        "--max_steps",
        str(STEPS + RESUMED_STEPS),
        "--do_eval",
        "false",
    ]
    return run_recipe(launch, task, output_dir, processes, [*extra, *flags])


@pytest.mark.slow
@pytest.mark.parametrize("task", ["closed_book_qa", "nce_lm", "sentiment", "transformer_xl"])
def test_resumed_on_one_process_ends_with_the_weights_of_two(
    tmp_path, task, launch, session_tokenizer, two_process_ddp_run
):
    written, _ = two_process_ddp_run(task)  # 2 processes x 4, checkpoint at STEPS; shared with test_scale_out.py
    checkpoint = written / f"checkpoint-{STEPS}"
    logs = {
        count: resume(launch, task, checkpoint, tmp_path / f"on{count}", count, session_tokenizer(task))
        for count in (2, 1)
    }
    for count, log in logs.items():
        assert re.search(rf"process 0 of {count}\b", log) and f"resuming from {checkpoint} (step {STEPS})" in log
        assert "holds the noise_generator" not in log  # nce_lm with `full` draws no noise: nothing to announce
    # Trainer's RNG states are per process: not restored on 1 process, which says so (harmless without dropout).
    assert logs[1].count(f"{checkpoint} holds the RNG states of 2 process(es), this run has 1: not restored") == 1
    assert "holds the RNG states" not in logs[2]
    if task == "transformer_xl":  # the memory of both processes' rows, re-split: one line on 1 process, none on 2
        assert logs[1].count("holds the stream_memory of 2 process(es), this run has 1: re-split") == 1
        assert "holds the stream_memory" not in logs[2]
    expected, actual = (load_file(tmp_path / f"on{count}" / "model.safetensors") for count in (2, 1))
    assert expected.keys() == actual.keys()
    for key in expected:
        # Float sums in another order (one gradient over 8 examples vs. the mean of two over 4): measured at most
        # 1.8e-7 apart here and 2.5e-7 from 1 process to 2 (the NCE LM; 4e-9 to 2.3e-8 for the others);
        # Transformer-XL resumed on 1 process without its memory ended 9.9e-4 apart.
        torch.testing.assert_close(actual[key], expected[key], atol=1e-5, rtol=0, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.slow
def test_nce_noise_resumed_on_two_processes_is_announced_in_one_line(tmp_path, launch):
    """A 1-process NCE checkpoint resumed on 2 processes: one line says the noise generators start again from their
    seeds (and one that the RNG states are not restored); resumed on 1, both are restored without a word."""
    run_recipe(launch, "nce_lm", tmp_path / "written", 1, ["--loss_type", "nce"])
    checkpoint = tmp_path / "written" / f"checkpoint-{STEPS}"
    logs = {
        count: resume(launch, "nce_lm", checkpoint, tmp_path / f"on{count}", count, ["--loss_type", "nce"])
        for count in (2, 1)
    }
    line = f"{checkpoint} holds the noise_generator of 1 process(es), this run has 2: not restored; each process draws"
    assert logs[2].count(line) == 1
    assert "holds the noise_generator" not in logs[1] and "holds the RNG states" not in logs[1]
    for count in (2, 1):
        assert re.search(rf"process 0 of {count}\b", logs[count])
        assert (tmp_path / f"on{count}" / "model.safetensors").is_file()
