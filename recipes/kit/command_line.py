"""A recipe's command line: `CONFIG.yaml [--flag value ...]` -> the recipe's dataclasses (`recipes.kit.arguments`),
checked across them and against this machine before anything runs, then `main`, with one `error:` line for a
failure the user can fix.

The YAML gives the values, flags on the command line override them, and a key that no dataclass knows fails by
name before anything runs (as in alignment-handbook). argparse's own errors (a value of the wrong type, a flag
without its value, a choice not offered) become one `ConfigError` line too (`OneLineParser`): argparse would print
the usage of every flag first, over a hundred lines with `TrainingArguments`, above the one that matters. On a
machine without an accelerator `use_cpu` defaults to true: it is what makes a multi-process launch (`--multi_gpu`,
gloo) really distributed.

Checked at parse time, before any data, model or checkpoint is read: values `TrainingArguments`
accepts but that cannot train (`max_steps` 0, with which Trainer would take one step, or below -1; batch sizes
below 1); a run with nothing to do or an untrained model to evaluate (as in transformers' example scripts, every
recipe trains with `do_train`, evaluates with `do_eval`, predicts with `do_predict`); what a loading field needs
from this machine; a new model's config; a quantised model trained without adapters. A checkpoint's config is read,
and `config_overrides` checked against it, by `recipes.kit.model_config.check_checkpoint_config`, the first step of
every recipe's `main`.

`do_eval: false`, when given, means no evaluation, although `TrainingArguments` turns `do_eval` on whenever
`eval_strategy` is not "no" (so a YAML's `eval_strategy: epoch` would win over `--do_eval false`). Without training
`eval_strategy` has no effect, so it is set to "no" (which Trainer requires without an evaluation set); with
training it decides what Trainer evaluates (and `load_best_model_at_end` which weights are kept), so changing it
silently would change the trained model: such a run is refused, naming the flag to set.
"""

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import IntervalStrategy

from recipes.kit.arguments import LoraArguments, ModelArguments
from recipes.kit.distributed import leave_process_group
from recipes.kit.dry_run import DryRunFinished
from recipes.kit.errors import EXIT_STATUS, ConfigError, debug_requested, hub_ids, user_error_message
from recipes.kit.hp_search import check_search_space, run_search
from recipes.kit.launch_checks import check_launch_fits_machine
from recipes.kit.loading_options import check_kbit_training, check_loading_environment
from recipes.kit.lost_peers import bound_waits, is_lost_peer, lost_peer_message
from recipes.kit.model_card import resolved_configuration
from recipes.kit.model_config import check_config_values
from recipes.kit.run_lock import output_dir_lock


class OneLineParser(HfArgumentParser):
    """`HfArgumentParser` whose own errors raise `ConfigError` (module docstring)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (--help lists every flag with its type)")


def check_training_values(training_args: TrainingArguments) -> None:
    """Checks the values that `TrainingArguments` accepts but that cannot train or evaluate.

    Raises:
        ConfigError: `max_steps` 0 or below -1 (-1: train `num_train_epochs`), a batch size or
            `gradient_accumulation_steps` below 1, or a `ddp_timeout` below 1 second, naming the flag.
    """
    if training_args.max_steps == 0 or training_args.max_steps < -1:
        raise ConfigError(
            f"max_steps={training_args.max_steps}: give a positive number of steps, or -1 (the default) to "
            "train num_train_epochs epochs"
        )
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(training_args, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(training_args, name)}")
    if training_args.ddp_timeout < 1:
        raise ConfigError(
            f"ddp_timeout must be at least 1 (seconds a process waits for the others), got {training_args.ddp_timeout}"
        )


def honour_do_eval(training_args: TrainingArguments, requested: bool | None) -> None:
    """Applies `do_eval false` when the user gave it (`requested`; None: not given) (module docstring): without
    training, sets `do_eval` false and `eval_strategy` "no".

    Raises:
        ConfigError: a run that trains with an `eval_strategy` that evaluates, naming the flags to set.
    """
    if requested is not False or not training_args.do_eval:
        return
    if training_args.do_train:
        raise ConfigError(
            f"do_eval is false but eval_strategy is {training_args.eval_strategy.value!r}, which evaluates during "
            "training: set eval_strategy no as well (and load_best_model_at_end false), or do_eval true"
        )
    training_args.do_eval, training_args.eval_strategy = False, IntervalStrategy.NO


def check_run(model_args: ModelArguments, training_args: TrainingArguments) -> None:
    """Checks that the run has something to do, and a model to do it with.

    Raises:
        ConfigError: none of `do_train`, `do_eval`, `do_predict`; `do_train` false without `model_name_or_path`;
            an `output_dir` that is a file; or a training run of no steps and no epochs, naming the fields.
    """
    if not (training_args.do_train or training_args.do_eval or training_args.do_predict):
        raise ConfigError("nothing to do: set do_train, do_eval and/or do_predict to true")
    if not training_args.do_train and not model_args.model_name_or_path:
        raise ConfigError("do_train is false: give the trained model to evaluate or predict with as model_name_or_path")
    if os.path.exists(training_args.output_dir) and not os.path.isdir(training_args.output_dir):
        raise ConfigError(f"output_dir {training_args.output_dir!r} is a file; give a folder (new or a previous run's)")
    if training_args.do_train and training_args.max_steps <= 0 and training_args.num_train_epochs <= 0:
        raise ConfigError(
            f"num_train_epochs={training_args.num_train_epochs} with max_steps={training_args.max_steps} trains "
            "nothing: give a positive num_train_epochs or max_steps (or do_train false to only evaluate)"
        )


def run_from_command_line(main: Callable[..., dict], config_classes: tuple[type, ...]) -> None:
    """A recipe's command-line entry: parses `CONFIG.yaml [--flag value ...]` into `config_classes`, runs `main`
    holding the lock of `output_dir` (`recipes.kit.run_lock`), then leaves the process group
    (`recipes.kit.distributed.leave_process_group`; on a failure the user can fix too, without waiting for the other
    processes, so that no gloo thread is left to abort the exit). The process group's collectives wait `ddp_timeout`
    at most, on CPU too (`recipes.kit.lost_peers.bound_waits`). A dry run (`--dry_run true`, `recipes.kit.dry_run`)
    takes no lock, prints the resolved configuration and the run's report on the main process, and returns.

    Raises:
        SystemExit: status 2 (`EXIT_STATUS`) after printing `error: <message>` on stderr, for a failure the user can
            fix (`recipes.kit.errors`: a configuration, data or Hub error, or an invalid value found while
            parsing), or for a process lost mid-run (`recipes.kit.lost_peers.lost_peer_message`, one line a
            machine); with `FINETUNE_RECIPES_DEBUG=1` the error itself is raised. Any other error is raised as is.
    """
    parsed: tuple = ()
    training_args = None
    exit_status = 0
    try:
        try:
            parsed = parse_config(*config_classes)
        except ValueError as error:  # TrainingArguments' own checks (ours raise ConfigError): a value the user gave
            raise ConfigError(str(error)) from error
        training_args = next((args for args in parsed if isinstance(args, TrainingArguments)), None)
        dry_run = getattr(training_args, "dry_run", False)
        if training_args is not None:
            bound_waits(training_args)
        configuration = (
            resolved_configuration(parsed, leave_out=("dry_run",)) if dry_run else ""
        )  # before the lifecycle
        with output_dir_lock(None if dry_run else training_args):
            if getattr(training_args, "hp_search", None):
                run_search(main, parsed)
            else:
                main(*parsed)
    except DryRunFinished as finished:
        if training_args.process_index == 0:
            sys.stdout.write(f"# dry run: resolved configuration\n{configuration}# dry run: plan\n{finished.report}\n")
    except Exception as error:
        message = user_error_message(error, hub_ids(parsed))
        if message is None and training_args is not None and is_lost_peer(error) and not debug_requested():
            message = lost_peer_message(training_args)  # every process answers the roll call
            if training_args.local_process_index != 0:  # one line a machine: its first process's
                message = ""
        if message is None or debug_requested():
            raise
        if message:
            sys.stderr.write(f"error: {message}\n")
        exit_status = EXIT_STATUS
    # After the `except` block, which held the error's frames and with them the Trainer and its process group.
    leave_process_group(wait_for_others=exit_status == 0)
    if exit_status:
        sys.exit(exit_status)


def parse_config(*dataclass_types: type, argv: list[str] | None = None) -> tuple:
    """Parses `[CONFIG.yaml] [--key value ...]` (`argv`, default `sys.argv[1:]`) into instances of
    `dataclass_types`, in their order: the YAML's values become the parser's defaults, so any `--key value` wins;
    then the parse-time checks of the module docstring.

    Raises:
        ConfigError: a missing or malformed YAML file, an unknown key, a value argparse cannot read
            (`--learning_rate abc`), or a value refused by the dataclasses' `__post_init__`, `check_training_values`,
            `honour_do_eval`, `check_run`, `check_launch_fits_machine`, `check_loading_environment`,
            `check_config_values` or `check_kbit_training`.
        ValueError: a value `TrainingArguments`' own checks refuse (`run_from_command_line` reports it as a
            `ConfigError`).
    """
    check_launch_fits_machine()  # first: TrainingArguments reads the launch's DeepSpeed request when it is built
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = OneLineParser(dataclass_types)
    if any(issubclass(dtype, TrainingArguments) for dtype in dataclass_types):
        # Without it, on a machine with no accelerator, accelerate sees no device and every process runs alone.
        parser.set_defaults(use_cpu=not torch.accelerator.is_available())
    yaml_values = {}
    if argv and argv[0].endswith((".yaml", ".yml")):
        config_file = Path(argv.pop(0))
        yaml_values = _read_yaml(config_file, parser)
        parser.set_defaults(**yaml_values)
    parsed = parser.parse_args_into_dataclasses(args=argv)
    model_args = [args for args in parsed if isinstance(args, ModelArguments)]
    training_args = [args for args in parsed if isinstance(args, TrainingArguments)]
    if training_args:
        check_training_values(training_args[0])
        honour_do_eval(training_args[0], _given_value("do_eval", parser, yaml_values, argv))
    if training_args and getattr(training_args[0], "hp_search", None):
        check_search_space(training_args[0].hp_space, parsed)
    if model_args:
        check_loading_environment(model_args[0])
        check_config_values(model_args[0])
    if model_args and training_args:
        check_run(model_args[0], training_args[0])
        lora_args = next((args for args in parsed if isinstance(args, LoraArguments)), None)
        check_kbit_training(model_args[0], lora_args, do_train=training_args[0].do_train)
    return parsed


def _given_value(name: str, parser: HfArgumentParser, yaml_values: dict, argv: list[str]) -> Any:
    """The value of flag `name` as the user gave it (the command line over the YAML), or None if not given."""
    if name not in yaml_values and not any(arg == f"--{name}" or arg.startswith(f"--{name}=") for arg in argv):
        return None
    return getattr(parser.parse_known_args(argv)[0], name)


def _read_yaml(config_file: Path, parser: HfArgumentParser) -> dict:
    if not config_file.is_file():
        raise ConfigError(f"{config_file}: no such config file")
    values = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{config_file}: expected a mapping of key: value, got {type(values).__name__}")
    known = {field.name for dtype in parser.dataclass_types for field in dataclasses.fields(dtype) if field.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{config_file}: unknown key(s) {unknown}; check the spelling against --help")
    return values
