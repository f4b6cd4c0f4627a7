"""The training callbacks (`recipes.kit.callbacks`): early stopping (`--early_stopping_patience`,
`LoggedEarlyStopping`), which every recipe's trainer attaches: a run whose metric stops improving stops at the
expected step, a resumed run keeps counting, and the flags it cannot work with fail at parse time. The callbacks
that act across processes are tested where they act: `ParameterShareLogger`'s count in test_fsdp.py,
`RankStateCallback`'s files in test_resume.py and test_transformer_xl.py; here, what `RankStateCallback` and
`ProcessCountInCheckpoints` do with a checkpoint of another number of processes (whole runs:
test_resume_other_count.py)."""

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from recipes.kit.callbacks import ProcessCountInCheckpoints, RankStateCallback, Relayout, other_count_line
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


def stream_memory_callback(**kwargs) -> RankStateCallback:
    return RankStateCallback(
        "stream_memory", what="stream memory", on_other_layout="each process starts with empty memory", **kwargs
    )


def resume_args(checkpoint: Path, process_index: int, world_size: int) -> SimpleNamespace:
    return SimpleNamespace(resume_from_checkpoint=str(checkpoint), process_index=process_index, world_size=world_size)


def test_per_process_state_of_another_process_count_is_not_restored_and_records_it(tmp_path):
    """A checkpoint written by 1 process, resumed on 2: the state laid out for 1 is left out, which the callback
    records for the resume line (`ProcessCountInCheckpoints`); resumed on 1, it is restored and nothing recorded."""
    restored = []
    callback = stream_memory_callback(get_state=lambda: {"memory": torch.arange(3.0)}, set_state=restored.append)
    checkpoint = tmp_path / "checkpoint-4"
    writer = SimpleNamespace(output_dir=str(tmp_path), process_index=0, world_size=1)
    callback.on_save(writer, SimpleNamespace(global_step=4), None)
    assert [path.name for path in checkpoint.iterdir()] == ["stream_memory_rank0.safetensors"]
    for process_index in (0, 1):
        callback.on_train_begin(resume_args(checkpoint, process_index, 2), SimpleNamespace(global_step=4), None)
        assert callback.other_count_outcome == Relayout(
            "stream memory not restored (each process starts with empty memory)", exact=False
        )
    assert restored == []
    callback.on_train_begin(resume_args(checkpoint, 0, 1), SimpleNamespace(global_step=4), None)
    assert len(restored) == 1 and torch.equal(restored[0]["memory"], torch.arange(3.0))
    assert callback.other_count_outcome is None


def test_per_process_state_that_reshards_is_restored_as_each_process_share(tmp_path):
    """Written by 2 processes, resumed on 1 with a `reshard`: the one process gets what `reshard` makes of both
    writers' states (in process order), recorded as re-split exactly; a `reshard` that cannot (None) leaves it
    out."""
    shares, written = [], iter([torch.zeros(2), torch.ones(2)])  # process 0's state, then process 1's
    callback = stream_memory_callback(
        get_state=lambda: {"memory": next(written)},
        set_state=shares.append,
        reshard=lambda states: {"memory": torch.cat([state["memory"] for state in states])},
    )
    checkpoint = tmp_path / "checkpoint-4"
    for process_index in (0, 1):
        writer = SimpleNamespace(output_dir=str(tmp_path), process_index=process_index)
        callback.on_save(writer, SimpleNamespace(global_step=4), None)
    callback.on_train_begin(resume_args(checkpoint, 0, 1), SimpleNamespace(global_step=4), None)
    assert len(shares) == 1 and torch.equal(shares[0]["memory"], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert callback.other_count_outcome == Relayout("stream memory re-split over this run's processes", exact=True)
    callback.reshard = lambda states: None
    callback.on_train_begin(resume_args(checkpoint, 0, 1), SimpleNamespace(global_step=4), None)
    assert len(shares) == 1 and callback.other_count_outcome.exact is False


def test_the_resume_line_joins_every_outcome_and_warns_when_one_is_not_exact():
    re_split = Relayout("stream memory re-split over this run's processes", exact=True)
    not_restored = Relayout("noise generators not restored (seeded per process)", exact=False)
    level, line = other_count_line("out/checkpoint-4", written_by=2, world_size=1, outcomes=[re_split, not_restored])
    assert level == logging.WARNING
    assert line == (
        "out/checkpoint-4 was written by 2 processes, this run has 1: stream memory re-split over this run's "
        "processes; noise generators not restored (seeded per process)"
    )
    assert other_count_line("c", written_by=1, world_size=2, outcomes=[re_split]) == (
        logging.INFO,
        "c was written by 1 process, this run has 2: stream memory re-split over this run's processes",
    )
    level, line = other_count_line("c", written_by=1, world_size=2, outcomes=[])
    assert (level, line) == (
        logging.INFO,
        "c was written by 1 process, this run has 2: no per-process state to re-lay out",
    )


def test_a_resume_on_another_process_count_is_announced_in_one_line_from_the_main_process(tmp_path, caplog):
    """A checkpoint that records 2 processes (`process_count.json`, written on save by the main process only),
    with their RNG states and stream memory, resumed on 1: one warning line says the memory was re-split and the
    RNG states not carried over, whatever the callbacks' order; on 2 processes and for a new run, no line."""
    memory = iter([torch.zeros(2), torch.ones(2)])
    trainer_callbacks: list = []
    count = ProcessCountInCheckpoints(trainer_callbacks)
    memory_state = stream_memory_callback(
        get_state=lambda: {"memory": next(memory)}, set_state=lambda tensors: None, reshard=lambda states: states[0]
    )
    trainer_callbacks += [count, memory_state]  # the announcer first: the line waits for the memory's outcome
    checkpoint = tmp_path / "checkpoint-4"
    for process_index in (0, 1):
        writer = SimpleNamespace(output_dir=str(tmp_path), process_index=process_index, should_save=process_index == 0)
        for callback in trainer_callbacks:
            callback.on_save(SimpleNamespace(**vars(writer), world_size=2), SimpleNamespace(global_step=4), None)
        (checkpoint / f"rng_state_{process_index}.pth").write_bytes(b"")
    assert json.loads((checkpoint / "process_count.json").read_text()) == {"num_processes": 2}
    caplog.set_level(logging.INFO, logger="recipes.kit.callbacks")
    new_run = SimpleNamespace(resume_from_checkpoint=None, output_dir=str(tmp_path), process_index=0, world_size=1)
    for args, step in [(resume_args(checkpoint, 0, 1), 4), *((resume_args(checkpoint, i, 2), 4) for i in (0, 1))]:
        for event in ("on_train_begin", "on_epoch_begin", "on_epoch_begin"):  # a second epoch says nothing again
            for callback in trainer_callbacks:
                getattr(callback, event)(args, SimpleNamespace(global_step=step), None)
    for event in ("on_train_begin", "on_epoch_begin"):
        for callback in trainer_callbacks:
            getattr(callback, event)(new_run, SimpleNamespace(global_step=0), None)
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
    assert caplog.records[0].getMessage() == (
        f"{checkpoint} was written by 2 processes, this run has 1: stream memory re-split over this run's "
        "processes; Trainer's per-process RNG states not carried over (dropout draws other masks than a resume on "
        "2 processes would)"
    )
