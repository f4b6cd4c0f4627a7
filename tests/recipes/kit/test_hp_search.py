"""`recipes.kit.hp_search`: `--hp_search optuna` runs each trial as a whole recipe run in `output_dir/trial-k`, scores
it by `metric_for_best_model`, writes the table; a rerun of a finished search trains nothing; a search stopped in a
trial reruns that trial, with its values, in its folder, resuming from its checkpoint; a space that cannot be
searched is refused when parsing."""

import json
import re
import sys
from pathlib import Path

import pytest

import recipes.nce_lm.train as recipe
from recipes.kit.command_line import parse_config, run_from_command_line
from recipes.kit.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
TINY = str(REPO / "recipes/nce_lm/configs/tiny.yaml")
SPACE = {"learning_rate": {"low": 1.0e-4, "high": 1.0e-2, "log": True}, "seed": [1, 2]}

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def search_argv(output_dir: Path, trials: int, *extra: str) -> list[str]:
    argv = [TINY, "--output_dir", str(output_dir), "--max_steps", "4", "--eval_strategy", "no"]
    argv += ["--hp_search", "optuna", "--hp_trials", str(trials), "--hp_space", json.dumps(SPACE), *extra]
    return argv


def run(argv: list[str], monkeypatch) -> list[dict]:
    monkeypatch.setattr(sys, "argv", ["train.py", *argv])
    run_from_command_line(recipe.main, recipe.CONFIG_CLASSES)
    return json.loads((Path(argv[2]) / "hp_search.json").read_text(encoding="utf-8"))


def modification_times(folder: Path) -> dict[Path, int]:
    return {
        path: path.stat().st_mtime_ns
        for path in folder.rglob("*")
        if path.name not in ("hp_search.db", "hp_search.json")
    }


@pytest.mark.slow
def test_a_tiny_search_runs_each_trial_in_its_folder_and_a_rerun_trains_nothing(tmp_path, monkeypatch):
    output_dir = tmp_path / "search"
    table = run(search_argv(output_dir, 4, "--save_strategy", "no"), monkeypatch)
    assert [row["folder"] for row in table] == [f"trial-{k}" for k in range(4)]
    for row in table:
        folder = output_dir / row["folder"]
        assert (folder / "model.safetensors").is_file()
        evaluated = json.loads((folder / "eval_results.json").read_text(encoding="utf-8"))
        assert row["objective"] == evaluated["eval_loss"]  # lower is better: metric_for_best_model unset
        config = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        assert config["global_step"] == 4
        assert 1.0e-4 <= row["learning_rate"] <= 1.0e-2 and row["seed"] in (1, 2)
    assert len({row["learning_rate"] for row in table}) == 4  # each trial its own value
    before = modification_times(output_dir)
    assert run(search_argv(output_dir, 4, "--save_strategy", "no"), monkeypatch) == table  # the table, rewritten
    assert modification_times(output_dir) == before


@pytest.mark.slow
def test_a_search_stopped_in_a_trial_reruns_it_in_its_folder_from_its_checkpoint(tmp_path, monkeypatch, caplog):
    """The search is stopped as a kill would leave it: its trial asked (running in the study) and its folder holding
    a checkpoint but no final model. The rerun finishes that trial with the same values in the same folder."""
    import optuna

    output_dir = tmp_path / "search"
    argv = search_argv(output_dir, 1, "--save_strategy", "steps", "--save_steps", "2")
    run(argv, monkeypatch)
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{output_dir / 'hp_search.db'}")
    stopped = study.ask()
    values = {"learning_rate": stopped.suggest_float("learning_rate", 1.0e-4, 1.0e-2, log=True)}
    stopped.suggest_categorical("seed", [1, 2])
    stopped.set_user_attr("folder", "trial-1")
    partial = [TINY, "--output_dir", str(output_dir / "trial-1"), "--max_steps", "2", "--eval_strategy", "no"]
    partial += ["--save_strategy", "steps", "--save_steps", "2", "--learning_rate", str(values["learning_rate"])]
    recipe.main(*parse_config(*recipe.CONFIG_CLASSES, argv=[*partial, "--seed", str(stopped.params["seed"])]))
    for name in ("model.safetensors", "config.json"):
        (output_dir / "trial-1" / name).unlink()
    caplog.set_level("INFO", logger="recipes.kit.lifecycle")
    table = run(search_argv(output_dir, 2, "--save_strategy", "steps", "--save_steps", "2"), monkeypatch)
    assert f"resuming from {output_dir / 'trial-1' / 'checkpoint-2'}" in caplog.text
    rerun = next(row for row in table if row["folder"] == "trial-1")
    assert (rerun["learning_rate"], rerun["seed"]) == (values["learning_rate"], stopped.params["seed"])
    state = json.loads((output_dir / "trial-1" / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 4 and len(table) == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--hp_space", '{"learning_rat": [0.1]}'], r"hp_space.learning_rat: not a field"),
        (["--hp_space", '{"seed": []}'], r"hp_space.seed: an empty list"),
        (["--hp_space", '{"learning_rate": {"low": 0.1, "high": 0.01}}'], r"needs low < high"),
        (["--hp_space", '{"learning_rate": {"low": 0, "high": 0.01, "log": true}}'], r"low > 0 with log"),
        (["--hp_space", '{"learning_rate": {"low": 0.1}}'], r"a list of choices or a range"),
        (["--hp_space", "{learning_rate"], r"hp_space: not a JSON mapping"),
        (["--hp_space", '{"seed": [1]}', "--hp_trials", "0"], r"hp_trials must be at least 1"),
        (["--hp_space", '{"seed": [1]}', "--dry_run", "true"], r"dry_run with hp_search"),
        ([], r"needs hp_space"),
    ],
)
def test_a_search_that_cannot_run_is_refused_when_parsing(tmp_path, flags, message):
    argv = [TINY, "--output_dir", str(tmp_path), "--hp_search", "optuna", *flags]
    with pytest.raises(ConfigError, match=message):
        parse_config(*recipe.CONFIG_CLASSES, argv=argv)


def test_only_known_backends_are_accepted(tmp_path):
    with pytest.raises(ConfigError, match=r"hp_search must be one of \['optuna'\]"):
        parse_config(*recipe.CONFIG_CLASSES, argv=[TINY, "--output_dir", str(tmp_path), "--hp_search", "grid"])


@pytest.mark.slow
def test_a_search_on_two_processes_runs_each_trial_on_both_with_the_same_values(tmp_path, launch):
    """The main process asks optuna and broadcasts each trial's values: every trial is one two-process run (DDP),
    whose final folder and metrics are written once, and the table has the trials asked."""
    output_dir = tmp_path / "search"
    log = launch(REPO / "recipes/nce_lm/train.py", *search_argv(output_dir, 2, "--save_strategy", "no"))
    table = json.loads((output_dir / "hp_search.json").read_text(encoding="utf-8"))
    assert [row["folder"] for row in table] == ["trial-0", "trial-1"]
    for row in table:
        state = json.loads((output_dir / row["folder"] / "trainer_state.json").read_text(encoding="utf-8"))
        assert state["global_step"] == 4
        evaluated = json.loads((output_dir / row["folder"] / "eval_results.json").read_text(encoding="utf-8"))
        assert row["objective"] == evaluated["eval_loss"]
    assert len(re.findall(r"parameters held per process: \[\d+, \d+\]", log)) == 2  # each trial on both processes
