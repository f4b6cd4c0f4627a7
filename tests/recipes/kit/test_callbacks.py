"""The training callbacks (`recipes.kit.callbacks`): early stopping (`--early_stopping_patience`,
`LoggedEarlyStopping`), which every recipe's trainer attaches: a run whose metric stops improving stops at the
expected step, a resumed run keeps counting, and the flags it cannot work with fail at parse time. The callbacks
that act across processes are tested where they act: `ParameterShareLogger`'s count in test_fsdp.py,
`RankStateCallback`'s files in test_resume.py and test_transformer_xl.py; here, what `RankStateCallback` and
`RngStatesOfAnotherCount` do with a checkpoint of another number of processes (whole runs:
test_resume_other_count.py)."""

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from recipes.kit.callbacks import RankStateCallback, RngStatesOfAnotherCount
from recipes.kit.command_line import parse_config
from recipes.kit.errors import ConfigError
from recipes.sentiment.train import CONFIG_CLASSES, main

TINY_YAML = Path(__file__).resolve().parents[3] / "recipes" / "sentiment" / "configs" / "tiny.yaml"
# Evaluation and a checkpoint every step; what early stopping needs (tiny.yaml: load_best_model_at_end true).
EVERY_STEP = ["--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "steps", "--save_steps", "1"]


def parse(output_dir: Path, *flags: str):
    return parse_config(*CONFIG_CLASSES, argv=[str(TINY_YAML), "--output_dir", str(output_dir), *flags])


@pytest.mark.slow
def test_a_metric_that_stops_improving_stops_training_after_patience_evaluations_and_for_good(tmp_path, caplog):
    # learning_rate 0: the weights never change, so eval_loss is the same at every evaluation and only the
    # first one is an improvement. With patience 2 the evaluations at steps 2 and 3 fail to improve: the run
    # ends at step 3 of 10.
    flags = ["--learning_rate", "0", "--max_steps", "10", "--max_train_samples", "64", "--max_eval_samples", "16"]
    flags += ["--per_device_train_batch_size", "8", "--metric_for_best_model", "loss", "--greater_is_better", "false"]
    caplog.set_level(logging.INFO, logger="recipes.kit.callbacks")
    main(*parse(tmp_path / "out", *flags, *EVERY_STEP, "--early_stopping_patience", "2"))
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert [entry["step"] for entry in state["log_history"] if "eval_loss" in entry] == [1, 2, 3]
    assert "early stopping at step 3: eval_loss is" in caplog.text and "(step 1)" in caplog.text
    # The same command again: the run is finished, nothing trains (resumed, it would take a 4th step first).
    weights = (tmp_path / "out" / "model.safetensors").read_bytes()
    main(*parse(tmp_path / "out", *flags, *EVERY_STEP, "--early_stopping_patience", "2"))
    assert json.loads((tmp_path / "out" / "trainer_state.json").read_text())["global_step"] == 3
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == weights
    assert not (tmp_path / "out" / "checkpoint-4").exists()


@pytest.mark.slow
def test_a_resumed_run_keeps_counting_evaluations_without_improvement(tmp_path):
    # As above, with patience 3: the first run stops at max_steps 2 with one evaluation without improvement (step
    # 2); resumed with max_steps 10, it stops at step 4, the step a run without the break stops at (a count
    # started again from zero would stop at step 5).
    flags = ["--learning_rate", "0", "--max_train_samples", "64", "--max_eval_samples", "16"]
    flags += ["--per_device_train_batch_size", "8", "--metric_for_best_model", "loss", "--greater_is_better", "false"]
    flags += [*EVERY_STEP, "--early_stopping_patience", "3"]
    main(*parse(tmp_path / "out", *flags, "--max_steps", "2"))
    main(*parse(tmp_path / "out", *flags, "--max_steps", "10"))
    assert json.loads((tmp_path / "out" / "trainer_state.json").read_text())["global_step"] == 4


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--early_stopping_patience", "-1"], "early_stopping_patience must be at least 1"),
        (["--early_stopping_patience", "0"], "early_stopping_patience must be at least 1"),
        (["--early_stopping_threshold", "-0.1"], "early_stopping_threshold must be >= 0"),
        (["--metric_for_best_model", "accuracy", "--load_best_model_at_end", "false"], "load_best_model_at_end"),
        (["--eval_strategy", "no", "--save_strategy", "no"], "eval_strategy steps or epoch"),
    ],
)
def test_early_stopping_flags_that_cannot_work_fail_at_parse_time(tmp_path, flags, words):
    with pytest.raises(ConfigError, match=words):
        parse(tmp_path / "out", "--early_stopping_patience", "2", *flags)


def test_early_stopping_needs_the_metric_named(tmp_path):
    # tiny.yaml names metric_for_best_model; without it transformers would default to "loss" silently.
    yaml_without_metric = tmp_path / "tiny.yaml"
    lines = TINY_YAML.read_text().splitlines()
    yaml_without_metric.write_text("\n".join(line for line in lines if not line.startswith("metric_for_best_model")))
    argv = [str(yaml_without_metric), "--output_dir", str(tmp_path / "out"), "--early_stopping_patience", "2"]
    with pytest.raises(ConfigError, match="needs metric_for_best_model"):
        parse_config(*CONFIG_CLASSES, argv=argv)


def test_per_process_state_of_another_process_count_is_not_restored_and_says_so(tmp_path, caplog):
    """A checkpoint written by 1 process, resumed on 2: the state laid out for 1 is left out, in one warning line
    naming both counts; resumed on 1, it is restored."""
    restored = []
    callback = RankStateCallback(
        "stream_memory",
        get_state=lambda: {"memory": torch.arange(3.0)},
        set_state=restored.append,
        on_other_layout="each process starts with empty memory",
    )
    checkpoint = tmp_path / "checkpoint-4"
    writer = SimpleNamespace(output_dir=str(tmp_path), process_index=0, world_size=1)
    callback.on_save(writer, SimpleNamespace(global_step=4), None)
    assert [path.name for path in checkpoint.iterdir()] == ["stream_memory_rank0.safetensors"]
    caplog.set_level(logging.WARNING, logger="recipes.kit.callbacks")
    for process_index in (0, 1):
        resumed = SimpleNamespace(resume_from_checkpoint=str(checkpoint), process_index=process_index, world_size=2)
        callback.on_train_begin(resumed, SimpleNamespace(global_step=4), None)
    assert restored == []
    assert caplog.text.count(f"{checkpoint} holds the stream_memory of 1 process(es), this run has 2") == 1
    assert "each process starts with empty memory" in caplog.text
    same_count = SimpleNamespace(resume_from_checkpoint=str(checkpoint), process_index=0, world_size=1)
    callback.on_train_begin(same_count, SimpleNamespace(global_step=4), None)
    assert len(restored) == 1 and torch.equal(restored[0]["memory"], torch.arange(3.0))


def test_per_process_state_that_reshards_is_restored_as_each_process_share_in_one_info_line(tmp_path, caplog):
    """Written by 2 processes, resumed on 1 with a `reshard`: the one process gets what `reshard` makes of both
    writers' states (in process order), and one info line says it was re-split; a `reshard` that cannot (None)
    leaves it out with the warning line."""
    shares, written = [], iter([torch.zeros(2), torch.ones(2)])  # process 0's state, then process 1's
    callback = RankStateCallback(
        "stream_memory",
        get_state=lambda: {"memory": next(written)},
        set_state=shares.append,
        on_other_layout="each process starts with empty memory",
        reshard=lambda states: {"memory": torch.cat([state["memory"] for state in states])},
    )
    checkpoint = tmp_path / "checkpoint-4"
    for process_index in (0, 1):
        writer = SimpleNamespace(output_dir=str(tmp_path), process_index=process_index)
        callback.on_save(writer, SimpleNamespace(global_step=4), None)
    caplog.set_level(logging.INFO, logger="recipes.kit.callbacks")
    resumed = SimpleNamespace(resume_from_checkpoint=str(checkpoint), process_index=0, world_size=1)
    callback.on_train_begin(resumed, SimpleNamespace(global_step=4), None)
    assert len(shares) == 1 and torch.equal(shares[0]["memory"], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    line = f"{checkpoint} holds the stream_memory of 2 process(es), this run has 1: re-split over this run's processes"
    assert caplog.text.count(line) == 1 and "WARNING" not in caplog.text
    callback.reshard = lambda states: None
    callback.on_train_begin(resumed, SimpleNamespace(global_step=4), None)
    assert len(shares) == 1 and "this run has 1: not restored; each process starts with empty memory" in caplog.text


def test_rng_states_of_another_process_count_are_announced_in_one_line(tmp_path, caplog):
    """`Trainer` restores no RNG state from a checkpoint of another number of processes: resumed on 1 from 2
    processes' `rng_state_<process>.pth`, or on 2 from one process's `rng_state.pth`, one warning line from the main
    process says so; on the count that wrote them (and for a new run), nothing."""
    two, one = tmp_path / "two" / "checkpoint-4", tmp_path / "one" / "checkpoint-4"
    for checkpoint, names in ((two, ["rng_state_0.pth", "rng_state_1.pth"]), (one, ["rng_state.pth"])):
        checkpoint.mkdir(parents=True)
        for name in names:
            (checkpoint / name).write_bytes(b"")
    caplog.set_level(logging.INFO, logger="recipes.kit.callbacks")
    callback, step_4 = RngStatesOfAnotherCount(), SimpleNamespace(global_step=4)
    for checkpoint, world_size in ((two, 1), (one, 2), (two, 2), (one, 1)):
        for process_index in range(world_size):
            resumed = SimpleNamespace(resume_from_checkpoint=str(checkpoint), process_index=process_index)
            callback.on_train_begin(SimpleNamespace(**vars(resumed), world_size=world_size), step_4, None)
    new_run = SimpleNamespace(resume_from_checkpoint=None, output_dir=str(tmp_path), process_index=0, world_size=2)
    callback.on_train_begin(new_run, SimpleNamespace(global_step=0), None)
    assert caplog.text.count("holds the RNG states") == 2
    assert caplog.text.count(f"{two} holds the RNG states of 2 process(es), this run has 1: not restored") == 1
    assert caplog.text.count(f"{one} holds the RNG states of 1 process(es), this run has 2: not restored") == 1
