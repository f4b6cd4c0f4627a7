"""`recipes.kit.command_line`: YAML values, command-line overrides, misspelt keys, and the cross-field checks of
the training values, all at parse time; a failure the user can fix leaves the process group before exiting."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import TrainingArguments

from recipes.kit.command_line import parse_config
from recipes.kit.errors import ConfigError
from recipes.transformer_xl import train as transformer_xl
from tests.conftest import accelerate_launch

TXL_TINY = Path(__file__).resolve().parents[3] / "recipes" / "transformer_xl" / "configs" / "tiny.yaml"


def write_yaml(path, values):
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return str(path)


def test_command_line_overrides_yaml(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path), "learning_rate": 1e-3, "seed": 7})
    (args,) = parse_config(TrainingArguments, argv=[config, "--learning_rate", "5e-5"])
    assert args.learning_rate == 5e-5 and args.seed == 7


def test_misspelt_yaml_key_fails_by_name(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path), "learning_rat": 1e-3})
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key\(s\) \['learning_rat'\]"):
        parse_config(TrainingArguments, argv=[config])


def test_removed_transformers_4_keys_fail_by_name(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path), "evaluation_strategy": "steps"})
    with pytest.raises(ConfigError, match="evaluation_strategy"):
        parse_config(TrainingArguments, argv=[config])


def test_use_cpu_defaults_to_true_without_an_accelerator(tmp_path):
    # On an accelerator-less machine this default is what makes `--multi_gpu` launches really distributed.
    (args,) = parse_config(TrainingArguments, argv=["--output_dir", str(tmp_path)])
    assert args.use_cpu == (not torch.accelerator.is_available())


def parse_txl(output_dir: Path, *flags: str) -> tuple:
    """The Transformer-XL recipe's tiny.yaml without evaluation, then `flags`."""
    argv = [str(TXL_TINY), "--output_dir", str(output_dir), "--do_eval", "false", *flags]
    return parse_config(*transformer_xl.CONFIG_CLASSES, argv=argv)


def test_do_eval_false_while_training_with_an_eval_strategy_is_refused_at_parse(tmp_path):
    with pytest.raises(ConfigError, match=r"do_eval is false but eval_strategy is 'steps'.*set eval_strategy no"):
        parse_txl(tmp_path, "--eval_strategy", "steps")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("max_steps", 0, r"max_steps=0: give a positive number of steps, or -1"),
        ("max_steps", -2, r"max_steps=-2"),
        ("per_device_train_batch_size", 0, r"per_device_train_batch_size must be at least 1, got 0"),
        ("per_device_eval_batch_size", 0, r"per_device_eval_batch_size must be at least 1, got 0"),
        ("ddp_timeout", 0, r"ddp_timeout must be at least 1 \(seconds a process waits for the others\), got 0"),
        ("ddp_timeout", -5, r"ddp_timeout must be at least 1 .*got -5"),
    ],
)
def test_values_that_cannot_train_are_refused_at_parse(tmp_path, flag, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_txl(tmp_path, f"--{flag}", str(value))


@pytest.mark.slow
def test_a_failure_after_a_collective_exits_with_its_line_and_no_gloo_thread_left(tmp_path):
    # Gloo threads alive at exit are what aborted processes at teardown (`recipes.kit.distributed`): the error path
    # exits too, and its traceback held the model, and with it the group.
    worker = Path(__file__).resolve().parents[1] / "error_exit_worker.py"
    log = accelerate_launch(worker, str(tmp_path), "--output_dir", str(tmp_path / "out"), check=False)
    assert log.count("error: a value the user can fix, found after the first step") == 2, log[-3000:]
    for rank in (0, 1):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report["when_failing"] > 0, report  # the group's threads were there to leave
        assert report["at_exit"] == 0, report
