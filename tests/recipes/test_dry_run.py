"""`--dry_run true` (`recipes.kit.dry_run`): every recipe does everything up to its first training step, prints the
resolved configuration (which reads back as the same run), what it would do with `output_dir`, its sizes and two
decoded training examples with the loss-carrying tokens marked, exits 0, and writes nothing into `output_dir`."""

import importlib
import sys
from pathlib import Path

import pytest
import yaml

from recipes.kit.command_line import parse_config, run_from_command_line
from recipes.kit.model_card import resolved_configuration

REPO = Path(__file__).resolve().parents[2]
TASKS = ["sentiment", "closed_book_qa", "nce_lm", "transformer_xl"]
#: What marks the loss-carrying part of a decoded example, per recipe: a label, or `[[ ]]` around a part of it.
LOSS_MARK = {"sentiment": " -> label ", "closed_book_qa": "answer:[[", "nce_lm": "[[", "transformer_xl": "[["}

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def dry_run(task: str, argv: list[str], capsys, monkeypatch) -> tuple[str, str]:
    """Runs `recipes/<task>/train.py CONFIG --dry_run true` in this process as the command line would: returns the
    printed configuration (YAML) and the report."""
    recipe = importlib.import_module(f"recipes.{task}.train")
    monkeypatch.setattr(sys, "argv", ["train.py", *argv, "--dry_run", "true"])
    capsys.readouterr()
    run_from_command_line(recipe.main, recipe.CONFIG_CLASSES)  # a SystemExit (status 2) would fail the test
    printed = capsys.readouterr().out
    configuration, report = printed.split("# dry run: plan\n")
    return configuration.removeprefix("# dry run: resolved configuration\n"), report


def tiny_argv(task: str, output_dir: Path) -> list[str]:
    return [str(REPO / "recipes" / task / "configs" / "tiny.yaml"), "--output_dir", str(output_dir)]


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_a_dry_run_reports_the_run_and_writes_nothing(task, tmp_path, capsys, monkeypatch):
    output_dir = tmp_path / "out"
    configuration, report = dry_run(task, tiny_argv(task, output_dir), capsys, monkeypatch)
    assert not output_dir.exists()
    lines = report.splitlines()
    assert lines[0] == f"output_dir {output_dir}: a new run: trains from the start"
    assert lines[1].startswith("training: ") and " tokens; " in lines[1] and " steps, " in lines[1]
    examples = [line for line in lines if line.startswith("example ")]
    assert len(examples) == 2 and all(LOSS_MARK[task] in line for line in examples)
    assert lines[-1].startswith("evaluation: ")
    # The printed configuration is the run: read back, it resolves to the same YAML (without dry_run).
    (tmp_path / "resolved.yaml").write_text(configuration, encoding="utf-8")
    recipe = importlib.import_module(f"recipes.{task}.train")
    assert "dry_run" not in yaml.safe_load(configuration)
    assert resolved_configuration(parse_config(*recipe.CONFIG_CLASSES, argv=[str(tmp_path / "resolved.yaml")])) == (
        configuration
    )


@pytest.mark.slow
def test_the_marked_tokens_of_a_qa_example_are_exactly_its_labels(tmp_path, capsys, monkeypatch):
    """The `[[ ]]` part of a decoded QA example is the text of the tokens whose label is not -100."""
    _, report = dry_run("closed_book_qa", tiny_argv("closed_book_qa", tmp_path / "out"), capsys, monkeypatch)
    example = next(line for line in report.splitlines() if line.startswith("example 0: "))
    marked = example.split("[[", 1)[1].rsplit("]]", 1)[0]
    assert marked.endswith("<|endoftext|>") and "question:" not in marked and "answer:" not in marked


@pytest.mark.slow
def test_a_dry_run_on_a_finished_run_says_so_and_leaves_the_folder_as_it_was(tiny_run, capsys, monkeypatch):
    folder = tiny_run("sentiment")
    before = {path: path.stat().st_mtime_ns for path in folder.rglob("*")}
    _, report = dry_run("sentiment", tiny_argv("sentiment", folder), capsys, monkeypatch)
    assert report.splitlines()[0].startswith(f"output_dir {folder}: a finished run (")
    _, report = dry_run(
        "sentiment", [*tiny_argv("sentiment", folder), "--overwrite_output_dir", "true"], capsys, monkeypatch
    )
    assert (
        report.splitlines()[0]
        == f"output_dir {folder}: start over: overwrite_output_dir empties it (not in a dry run), then a new run trains"
    )
    assert {path: path.stat().st_mtime_ns for path in folder.rglob("*")} == before


@pytest.mark.slow
def test_a_dry_run_with_a_checkpoint_names_the_one_it_would_resume(tmp_path, capsys, monkeypatch):
    """A run stopped after its first checkpoint: the dry run of the same command names that checkpoint and its step,
    and resumes nothing."""
    recipe = importlib.import_module("recipes.nce_lm.train")
    output_dir = tmp_path / "out"
    argv = [*tiny_argv("nce_lm", output_dir), "--max_steps", "2", "--save_steps", "2", "--save_strategy", "steps"]
    argv += ["--eval_strategy", "no", "--do_eval", "false"]
    recipe.main(*parse_config(*recipe.CONFIG_CLASSES, argv=argv))
    for name in ("model.safetensors", "config.json"):  # the run "crashed" before its final save
        (output_dir / name).unlink()
    _, report = dry_run("nce_lm", [*argv[:-4], "--max_steps", "4"], capsys, monkeypatch)
    assert report.splitlines()[0] == f"output_dir {output_dir}: resume from {output_dir / 'checkpoint-2'} (step 2)"
    assert sorted(path.name for path in output_dir.iterdir() if path.name.startswith("checkpoint-")) == ["checkpoint-2"]
