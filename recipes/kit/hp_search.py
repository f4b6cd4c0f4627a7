"""`--hp_search optuna --hp_trials N`: a hyperparameter search in which every trial is a whole run of the recipe.

The search space is given in the YAML (`hp_space`; on the command line: the same mapping as JSON), one entry per
field of the recipe's dataclasses: a list of values to choose from, or a range `{low, high}` (`log: true` samples
it on a log scale; integer bounds give integers):

    hp_search: optuna
    hp_trials: 8
    hp_space:
      learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
      seed: [1, 2, 3]

Trial k runs the recipe's `main` into `output_dir/trial-k`, with the trial's values set on a copy of the parsed
arguments, and is scored by `metric_for_best_model` (default `loss`, lower is better; `greater_is_better` as in
`Trainer`). At the end the main process prints a table of the trials and the best trial's folder and writes it to
`output_dir/hp_search.json`.

Why not `Trainer.hyperparameter_search`: it runs every trial inside one `Trainer` (one data step, one
`model_init` per trial, checkpoints under `run-<id>`), so a trial does not go through the run lifecycle: a rerun
would train every trial again, and a trial killed mid-run could not resume. Here each trial is a run like any
other (its own lifecycle, card, metrics files, lock-free inside the search's lock), and the study is kept in
`output_dir/hp_search.db` (optuna's SQLite storage, seeded sampler): a rerun of a finished search trains nothing
(each trial folder is a finished run: evaluated as saved), and a search stopped mid-trial reruns that trial with
the same values in the same folder, which resumes from its last checkpoint. On several processes the main process
asks optuna and broadcasts each trial's values; every process runs the trial. `optuna` is an optional extra
(`pip install -e ".[search]"`).
"""

import copy
import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelerate.utils import broadcast_object_list
from transformers import TrainingArguments

from recipes.kit.errors import ConfigError

logger = logging.getLogger(__name__)

#: The keys of a range in `hp_space`.
RANGE_KEYS = {"low", "high", "log"}
#: Where the study and the table are kept, in `output_dir`.
STUDY_FILE, TABLE_FILE = "hp_search.db", "hp_search.json"


def check_search_space(space: dict[str, Any], arguments: tuple) -> None:
    """Raises `ConfigError` naming the entry of `hp_space` that is no field of `arguments` (the parsed dataclasses),
    or whose value is neither a non-empty list nor a range `{low, high[, log]}` with `low < high` (> 0 on a log
    scale)."""
    fields = {field.name for args in arguments for field in dataclasses.fields(args) if field.init}
    for name, values in space.items():
        where = f"hp_space.{name}"
        if name not in fields:
            raise ConfigError(f"{where}: not a field of this recipe (--help lists them)")
        if isinstance(values, list):
            if not values:
                raise ConfigError(f"{where}: an empty list of choices")
            continue
        if not isinstance(values, dict) or not {"low", "high"} <= set(values) or set(values) - RANGE_KEYS:
            raise ConfigError(f"{where}: give a list of choices or a range {{low, high, log}}, got {values!r}")
        low, high = values["low"], values["high"]
        if not all(isinstance(bound, int | float) and not isinstance(bound, bool) for bound in (low, high)):
            raise ConfigError(f"{where}: low and high must be numbers, got {low!r} and {high!r}")
        if not low < high or (values.get("log") and low <= 0):
            raise ConfigError(f"{where}: needs low < high (and low > 0 with log), got {low!r}, {high!r}")


def run_search(main: Callable[..., dict], arguments: tuple) -> list[dict[str, Any]]:
    """Runs the search of `arguments` (module docstring): the trials still to run, then the table.

    Returns:
        one row per trial: `trial`, `folder`, the trial's values, `objective`.
    Raises:
        ConfigError: `optuna` is not installed, or a trial's metrics lack `metric_for_best_model`.
    """
    try:
        import optuna
    except ImportError:
        raise ConfigError("hp_search optuna needs optuna: pip install -e '.[search]' (or pip install optuna)") from None
    training_args = next(args for args in arguments if isinstance(args, TrainingArguments))
    output_dir, metric = Path(training_args.output_dir), _objective_name(training_args)
    study = None
    if training_args.process_index == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name="search",
            storage=f"sqlite:///{output_dir / STUDY_FILE}",
            load_if_exists=True,
            direction="maximize" if training_args.greater_is_better else "minimize",
            sampler=optuna.samplers.TPESampler(seed=training_args.seed),
        )
        _requeue_interrupted(study, optuna)
    remaining = [_remaining(study, training_args.hp_trials) if study else 0]
    broadcast_object_list(remaining)
    for _ in range(remaining[0]):
        trial, order = (study.ask(), None) if study else (None, None)
        if trial is not None:
            folder = trial.user_attrs.get("folder") or f"trial-{trial.number}"
            trial.set_user_attr("folder", folder)
            order = [folder, _suggest(trial, training_args.hp_space)]
        order = broadcast_object_list([order])[0]
        metrics = main(*_trial_arguments(arguments, output_dir / order[0], order[1]))
        if metric not in metrics:
            raise ConfigError(f"metric_for_best_model: the trial's metrics have no {metric} (have {sorted(metrics)})")
        if study is not None:
            study.tell(trial, metrics[metric])
    rows = _table(study) if study else []
    if study is not None:
        (output_dir / TABLE_FILE).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        best = study.best_trial.user_attrs["folder"]
        logger.info("search of %d trials by %s:\n%s\nbest: %s", len(rows), metric, _format(rows), output_dir / best)
    return rows


def _objective_name(training_args: TrainingArguments) -> str:
    name = training_args.metric_for_best_model or "loss"
    return name if name.startswith("eval_") else f"eval_{name}"


def _requeue_interrupted(study: Any, optuna: Any) -> None:
    """A trial left running by a stopped search (none can run now: the search holds `output_dir`'s lock) is
    failed and asked again with the same values and folder, so its run resumes from its checkpoint."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"folder": trial.user_attrs.get("folder")})


def _remaining(study: Any, trials: int) -> int:
    done = sum(trial.state.name == "COMPLETE" for trial in study.trials)
    waiting = sum(trial.state.name == "WAITING" for trial in study.trials)
    return max(trials - done, waiting)


def _suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for name, choices in space.items():
        if isinstance(choices, list):
            values[name] = trial.suggest_categorical(name, choices)
        elif all(isinstance(bound, int) for bound in (choices["low"], choices["high"])):
            values[name] = trial.suggest_int(name, choices["low"], choices["high"], log=bool(choices.get("log")))
        else:
            values[name] = trial.suggest_float(name, choices["low"], choices["high"], log=bool(choices.get("log")))
    return values


def _trial_arguments(arguments: tuple, folder: Path, values: dict[str, Any]) -> tuple:
    """Shallow copies of `arguments` with `values` set and `output_dir` = `folder`, the search fields off.
    Copies, not new instances: building another `TrainingArguments` resets the process's distributed state."""
    trial_arguments = tuple(copy.copy(args) for args in arguments)
    for args in trial_arguments:
        for name, value in values.items():
            if hasattr(args, name):
                setattr(args, name, value)
        if isinstance(args, TrainingArguments):
            args.output_dir, args.hp_search = str(folder), None
    return trial_arguments


def _table(study: Any) -> list[dict[str, Any]]:
    return [
        {"trial": trial.number, "folder": trial.user_attrs.get("folder"), **trial.params, "objective": trial.value}
        for trial in study.trials
        if trial.state.name == "COMPLETE"
    ]


def _format(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
