"""Experiment tracking: `report_to: tensorboard` (the optional `tensorboard` extra, offline) in every recipe."""

import importlib
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from recipes.kit.command_line import parse_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sentiment", "closed_book_qa", "nce_lm", "transformer_xl"])
def test_report_to_tensorboard_writes_the_training_loss(task, tmp_path):
    recipe = importlib.import_module(f"recipes.{task}.train")
    argv = [
        str(REPO / "recipes" / task / "configs" / "tiny.yaml"),
        "--output_dir",
        str(tmp_path),
        "--max_steps",
        "3",
        "--logging_steps",
        "1",
        "--report_to",
        "tensorboard",
        "--do_eval",
        "false",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--load_best_model_at_end",
        "false",
    ]
    recipe.main(*parse_config(*recipe.CONFIG_CLASSES, argv=argv))
    (event_file,) = (tmp_path / "runs").rglob("events.out.tfevents.*")  # default: output_dir/runs/<date_host>
    events = EventAccumulator(str(event_file.parent))
    events.Reload()
    assert [event.step for event in events.Scalars("train/loss")] == [1, 2, 3]
