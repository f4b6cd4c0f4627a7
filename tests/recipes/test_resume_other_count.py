"""A checkpoint resumed on another number of processes, with the same global batch of 8 (two_process_runs.py's
tiny runs, dropout off).

Sentiment, closed-book QA, the NCE LM with `loss_type=full` and Transformer-XL end with the weights a resume on the
original count ends with: the data order is the seeded sampler's (Transformer-XL: the streams of the global batch,
whose memory is re-split by rows), and with dropout off nothing draws from the RNG states `Trainer` restores only
per process (`rng_state_<process>.pth`). The NCE LM's noise (`nce`, `ranking`) comes from one generator per
process, seeded by its rank, so no run on another count draws the same noise. Every checkpoint records how many
processes wrote it (`process_count.json`), and a run resumed on another count says in ONE line, from the main
process, what is re-laid out and what is not restored (with dropout on too, and a Transformer-XL memory of another
global batch); a resume on the same count says nothing.
"""

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_overrides
from tests.recipes.two_process_runs import STEPS, run_recipe

# The extra steps each resumed run trains past the checkpoint it resumes from.
RESUMED_STEPS = 2
# Any line of the callbacks about this run's process count (the one line of `recipes.kit.callbacks.other_count_line`,
# and the two of the code before it: `... holds the RNG states of 2 process(es), this run has 1: ...`), at any level.
OTHER_COUNT_LINE = re.compile(r" (\w+) recipes\.kit\.callbacks: (.*\bthis run has \d+\b.*)$", re.M)
RNG_STATES = "Trainer's per-process RNG states not carried over (dropout draws other masks than a resume on {} would)"
NOISE = "noise generators not restored (each process draws its noise from its seed again, not the noise the first run "
NOISE += "would draw)"


def announced(log: str) -> list[tuple[str, str]]:
    """The level and text of each line of `log` (every process's) that announces a resume on another number of
    processes."""
    return OTHER_COUNT_LINE.findall(log)


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
    assert json.loads((checkpoint / "process_count.json").read_text()) == {"num_processes": 2}
    for count, log in logs.items():
        assert re.search(rf"process 0 of {count}\b", log) and f"resuming from {checkpoint} (step {STEPS})" in log
    # One line on 1 process, none on 2: Trainer's RNG states are per process (harmless without dropout); the
    # Transformer-XL memory of both processes' rows is re-split; nce_lm with `full` draws no noise.
    phrases = ["Transformer-XL memory re-split over this run's processes"] if task == "transformer_xl" else []
    said = "; ".join([*phrases, RNG_STATES.format("2 processes")])
    assert announced(logs[1]) == [("WARNING", f"{checkpoint} was written by 2 processes, this run has 1: {said}")]
    assert announced(logs[2]) == []
    expected, actual = (load_file(tmp_path / f"on{count}" / "model.safetensors") for count in (2, 1))
    assert expected.keys() == actual.keys()
    for key in expected:
        # Float sums in another order (one gradient over 8 examples vs. the mean of two over 4): measured at most
        # 1.8e-7 apart here and 2.5e-7 from 1 process to 2 (the NCE LM; 4e-9 to 2.3e-8 for the others);
        # Transformer-XL resumed on 1 process without its memory ended 9.9e-4 apart.
        torch.testing.assert_close(actual[key], expected[key], atol=1e-5, rtol=0, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.slow
def test_nce_noise_resumed_on_two_processes_is_announced_in_one_line(tmp_path, launch):
    """A 1-process NCE checkpoint (dropout on) resumed on 2 processes: one line says the noise generators start
    again from their seeds and the RNG states are not carried over; resumed on 1, both are restored without a
    word."""
    extra = [*tiny_overrides("nce_lm"), "--loss_type", "nce"]  # the model's dropout (0.1), not RECIPES' none
    run_recipe(launch, "nce_lm", tmp_path / "written", 1, extra)
    checkpoint = tmp_path / "written" / f"checkpoint-{STEPS}"
    logs = {count: resume(launch, "nce_lm", checkpoint, tmp_path / f"on{count}", count, extra) for count in (2, 1)}
    said = f"{NOISE}; {RNG_STATES.format('1 process')}"
    assert announced(logs[2]) == [("WARNING", f"{checkpoint} was written by 1 process, this run has 2: {said}")]
    assert announced(logs[1]) == []
    for count in (2, 1):
        assert re.search(rf"process 0 of {count}\b", logs[count])
        assert (tmp_path / f"on{count}" / "model.safetensors").is_file()


@pytest.mark.slow
def test_transformer_xl_with_noise_resumed_on_another_global_batch_is_announced_in_one_line(tmp_path, launch):
    """A 2-process Transformer-XL checkpoint (`loss_type nce`, dropout on) resumed on 1 process with half the global
    batch: one warning line says the noise generators and the memory (other streams) are not restored and the RNG
    states not carried over."""
    extra = [*tiny_overrides("transformer_xl"), "--loss_type", "nce", "--num_noise_samples", "16"]  # dropout 0.1
    run_recipe(launch, "transformer_xl", tmp_path / "written", 2, extra)
    checkpoint = tmp_path / "written" / f"checkpoint-{STEPS}"
    log = resume(
        launch, "transformer_xl", checkpoint, tmp_path / "on1", 1, [*extra, "--per_device_train_batch_size", "4"]
    )
    memory = "Transformer-XL memory not restored (another global batch, so other streams: each process starts with "
    memory += "empty memory)"
    said = f"{NOISE}; {memory}; {RNG_STATES.format('2 processes')}"
    assert announced(log) == [("WARNING", f"{checkpoint} was written by 2 processes, this run has 1: {said}")]
    assert re.search(r"process 0 of 1\b", log) and (tmp_path / "on1" / "model.safetensors").is_file()
