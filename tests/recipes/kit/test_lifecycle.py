"""The run lifecycle (`recipes.kit.lifecycle`): a rerun of a finished run trains nothing, a longer one continues,
a checkpoint of another model or one cut short is named, starting over is explicit, and evaluate-only uses the
folder as saved. Each run is the Transformer-XL tiny config at its smallest (2 steps of 2 x 8 tokens)."""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from recipes.kit.command_line import parse_config
from recipes.kit.errors import ConfigError
from recipes.kit.lifecycle import PROCESS_COUNT_FILE, checkpoint_processes, last_readable_checkpoint
from recipes.transformer_xl import train as recipe

REPO = Path(__file__).resolve().parents[3]
TINY_YAML = REPO / "recipes" / "transformer_xl" / "configs" / "tiny.yaml"
#: The smallest Transformer-XL of the tests (`TINY_OVERRIDES` in conftest.py), without dropout.
MODEL = "n_layer=1,d_model=32,d_embed=32,n_head=2,d_head=16,d_inner=64,dropout=0,dropatt=0"


def flags(output_dir: Path, **values) -> list[str]:
    """The tiny YAML with the tiny model, `max_steps 2` saved at every step, no evaluation; `values` win."""
    defaults = {
        "output_dir": output_dir,
        "config_overrides": MODEL,
        "tgt_len": 8,
        "mem_len": 8,
        "per_device_train_batch_size": 2,
        "max_steps": 2,
        "save_strategy": "steps",
        "save_steps": 1,
        "do_eval": "false",
        "disable_tqdm": "true",
    }
    return [str(TINY_YAML)] + [
        str(part) for key, value in {**defaults, **values}.items() for part in (f"--{key}", value)
    ]


def run(output_dir: Path, **values) -> dict:
    """The recipe's `main` on `flags(output_dir, **values)`, in this process, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return recipe.main(*parse_config(*recipe.CONFIG_CLASSES, argv=flags(output_dir, **values)))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished 2-step run with `checkpoint-1` and `checkpoint-2`; tests work on copies (`finished`)."""
    output_dir = tmp_path_factory.mktemp("lifecycle") / "finished"
    run(output_dir)
    return output_dir


@pytest.fixture
def finished(finished_run, tmp_path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under `folder`, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def global_step(folder: Path) -> int:
    return json.loads((folder / "trainer_state.json").read_text())["global_step"]


@pytest.mark.slow
def test_rerunning_a_finished_run_trains_nothing_and_leaves_its_files_untouched(finished, caplog):
    before = digests(finished)
    with caplog.at_level(logging.INFO):
        run(finished)
    assert digests(finished) == before  # weights, checkpoints, train_results.json, trainer_state.json, card
    assert global_step(finished) == 2 and not (finished / "checkpoint-3").exists()
    assert f"{finished} holds a finished run (2 steps, max_steps 2 requested): nothing to train" in caplog.text


@pytest.mark.slow
def test_rerunning_a_finished_run_counted_in_epochs_leaves_its_train_results(tmp_path):
    # The quick start's case: a run counted in epochs, rerun, used to train zero steps and rewrite
    # train_results.json with train_loss 0.0.
    by_epochs = {"max_steps": -1, "num_train_epochs": 1, "tgt_len": 64, "per_device_train_batch_size": 16}
    run(tmp_path / "epochs", save_strategy="epoch", **by_epochs)
    before = digests(tmp_path / "epochs")
    run(tmp_path / "epochs", save_strategy="epoch", **by_epochs)
    assert digests(tmp_path / "epochs") == before
    assert json.loads((tmp_path / "epochs" / "train_results.json").read_text())["train_loss"] > 0


@pytest.mark.slow
def test_a_finished_rerun_still_evaluates_the_saved_model(finished_run, finished, tmp_path):
    metrics = run(finished, do_eval="true")
    # The model as the first run saved it (the module's folder, read only): the rerun must not have changed it.
    evaluated = run(tmp_path / "evaluated", do_train="false", do_eval="true", model_name_or_path=finished_run)
    assert metrics["eval_loss"] == pytest.approx(evaluated["eval_loss"], abs=1e-6)
    assert json.loads((finished / "eval_results.json").read_text())["eval_loss"] == metrics["eval_loss"]


@pytest.mark.slow
def test_raising_max_steps_continues_from_the_last_checkpoint(finished, caplog):
    with caplog.at_level(logging.INFO):
        run(finished, max_steps=3)
    assert global_step(finished) == 3 and (finished / "checkpoint-3").is_dir()
    assert f"resuming from {finished / 'checkpoint-2'} (step 2)" in caplog.text


@pytest.mark.slow
def test_raising_max_steps_without_a_checkpoint_to_continue_from_is_refused(finished):
    for checkpoint in finished.glob("checkpoint-*"):
        shutil.rmtree(checkpoint)
    before = digests(finished)
    with pytest.raises(ConfigError, match=r"holds a trained model but no checkpoint to continue from"):
        run(finished, max_steps=3)
    assert digests(finished) == before


@pytest.mark.slow
def test_a_changed_model_on_resume_is_refused_naming_checkpoint_and_fields(finished):
    changed = MODEL.replace("d_model=32,d_embed=32", "d_model=64,d_embed=64")
    with pytest.raises(ConfigError) as refused:
        run(finished, max_steps=3, config_overrides=changed)
    message = str(refused.value)
    assert str(finished / "checkpoint-2") in message
    assert "d_model: 32 in checkpoint-2, 64 requested" in message and "d_embed: 32 in checkpoint-2, 64" in message


@pytest.mark.slow
def test_a_truncated_last_checkpoint_is_named_and_the_run_resumes_from_the_previous_one(finished, caplog):
    weights = finished / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a full disk, a killed copy
    with caplog.at_level(logging.INFO):
        run(finished, max_steps=3)
    assert f"{weights} cannot be read" in caplog.text
    assert f"resuming from {finished / 'checkpoint-1'}, the last one that can be read" in caplog.text
    assert global_step(finished) == 3


@pytest.mark.slow
def test_no_readable_checkpoint_stops_the_run_naming_each(finished):
    for step in (1, 2):
        (finished / f"checkpoint-{step}" / "trainer_state.json").unlink()
    with pytest.raises(ConfigError, match=r"no checkpoint in .* can be read: .*checkpoint-2: no trainer_state\.json"):
        run(finished, max_steps=3)


@pytest.mark.slow
def test_overwrite_output_dir_starts_over(finished):
    run(finished, max_steps=1, overwrite_output_dir="true")
    assert global_step(finished) == 1
    assert sorted(path.name for path in finished.glob("checkpoint-*")) == ["checkpoint-1"]


@pytest.mark.slow
def test_overwrite_output_dir_never_deletes_the_model_the_run_starts_from(finished):
    with pytest.raises(ConfigError, match=r"overwrite_output_dir would delete model_name_or_path"):
        run(finished, do_train="false", do_eval="true", model_name_or_path=finished, overwrite_output_dir="true")
    assert (finished / "model.safetensors").is_file()


@pytest.mark.slow
def test_evaluate_only_with_a_changed_architecture_is_refused(finished, tmp_path):
    with pytest.raises(ConfigError, match=r"n_layer: 1 in .*, 2 requested"):
        run(
            tmp_path / "evaluated",
            do_train="false",
            do_eval="true",
            model_name_or_path=finished,
            config_overrides=MODEL.replace("n_layer=1", "n_layer=2"),
        )
    assert not (tmp_path / "evaluated" / "eval_results.json").exists()


@pytest.mark.slow
def test_evaluate_only_with_a_weight_missing_is_refused_naming_it(finished, tmp_path):
    weights = load_file(finished / "model.safetensors")
    missing = next(name for name in weights if name.startswith("transformer.layers.0."))
    save_file({name: tensor for name, tensor in weights.items() if name != missing}, finished / "model.safetensors")
    with pytest.raises(ConfigError, match=rf"missing_keys.*{missing}"):
        run(tmp_path / "evaluated", do_train="false", do_eval="true", model_name_or_path=finished)


@pytest.mark.slow
def test_do_eval_false_writes_no_eval_results_whatever_the_eval_strategy(finished, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the\nriver\n")
    output_dir = tmp_path / "predicted"
    run(
        output_dir,
        do_train="false",
        do_eval="false",
        do_predict="true",
        eval_strategy="steps",
        model_name_or_path=finished,
        test_file=prompts,
        max_new_tokens=2,
    )
    assert sorted(path.name for path in output_dir.iterdir()) == ["predictions.jsonl"]


def write_checkpoint(folder: Path, per_process_files: list[str], processes: int | None = None) -> Path:
    """A checkpoint folder as `Trainer` leaves it (weights, `trainer_state.json`) with `per_process_files`, and the
    number of `processes` that wrote it recorded as the recipes record it (None: an older checkpoint without)."""
    folder.mkdir(parents=True)
    if processes is not None:
        (folder / PROCESS_COUNT_FILE).write_text(json.dumps({"num_processes": processes}))
    save_file({"weight": torch.zeros(1)}, folder / "model.safetensors")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": int(folder.name.split("-")[1])}))
    for name in per_process_files:
        if name.endswith(".pth"):
            torch.save({"cpu": torch.zeros(1)}, folder / name)
        else:
            save_file({"state": torch.zeros(1)}, folder / name)
    return folder


TWO_PROCESSES = [
    "rng_state_0.pth",
    "rng_state_1.pth",
    "noise_generator_rank0.safetensors",
    "noise_generator_rank1.safetensors",
]


@pytest.mark.parametrize(
    ("left_out", "missing"),
    [
        (
            ["rng_state_1.pth", "noise_generator_rank1.safetensors"],
            "noise_generator_rank1.safetensors, rng_state_1.pth",
        ),
        (["noise_generator_rank1.safetensors"], "noise_generator_rank1.safetensors"),  # lost after its RNG state
        (["noise_generator_rank0.safetensors"], "noise_generator_rank0.safetensors"),
    ],
)
def test_a_checkpoint_not_written_by_every_process_is_named_and_skipped(tmp_path, caplog, left_out, missing):
    write_checkpoint(tmp_path / "checkpoint-2", TWO_PROCESSES)
    lost = write_checkpoint(tmp_path / "checkpoint-4", [name for name in TWO_PROCESSES if name not in left_out])
    with caplog.at_level(logging.WARNING):
        assert last_readable_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert f"{lost}: not written by every process (no {missing}; a process stopped first)" in caplog.text


def test_a_checkpoint_whose_highest_process_wrote_nothing_is_named_and_skipped(tmp_path, caplog):
    # Process 2 of 3 lost before it wrote anything: its files look like a 2-process checkpoint's, which only the
    # recorded count tells apart; the same files recorded as 2 processes' are complete (the negative control).
    write_checkpoint(tmp_path / "checkpoint-2", TWO_PROCESSES, processes=2)
    lost = write_checkpoint(tmp_path / "checkpoint-4", TWO_PROCESSES, processes=3)
    with caplog.at_level(logging.WARNING):
        assert last_readable_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    missing = "noise_generator_rank2.safetensors, rng_state_2.pth"
    assert f"{lost}: not written by every process (no {missing}; a process stopped first)" in caplog.text


@pytest.mark.parametrize(
    ("recorded", "words"),
    [('{"num_processes": 0}', "num_processes is 0"), ("{}", "cannot be read (KeyError"), ("[2]", "(TypeError")],
)
def test_a_process_count_that_cannot_be_read_is_named_and_the_checkpoint_skipped(tmp_path, caplog, recorded, words):
    write_checkpoint(tmp_path / "checkpoint-2", TWO_PROCESSES, processes=2)
    unreadable = write_checkpoint(tmp_path / "checkpoint-4", TWO_PROCESSES)
    (unreadable / PROCESS_COUNT_FILE).write_text(recorded)
    with caplog.at_level(logging.WARNING):
        assert last_readable_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert f"{unreadable / PROCESS_COUNT_FILE}" in caplog.text and words in caplog.text


@pytest.mark.parametrize(
    ("files", "processes"),
    [
        (TWO_PROCESSES, None),
        (TWO_PROCESSES, 2),
        (["rng_state.pth", "noise_generator_rank0.safetensors"], None),
        (["rng_state.pth", "noise_generator_rank0.safetensors"], 1),
        ([], None),
        (["rng_state_0.pth", "rng_state_1.pth"], None),
    ],
    ids=["two processes", "two recorded", "one process", "one recorded", "save_only_model", "no recipe state"],
)
def test_a_checkpoint_every_process_wrote_is_resumed(tmp_path, files, processes):
    write_checkpoint(tmp_path / "checkpoint-4", files, processes)
    assert last_readable_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")


@pytest.mark.parametrize(
    ("files", "recorded", "expected"),
    [
        (["rng_state_0.pth", "rng_state_1.pth"], 3, 3),  # recorded: the highest process wrote nothing
        (["rng_state.pth"], 4, 4),
        (TWO_PROCESSES, None, 2),  # older checkpoints: counted from the files
        (["rng_state_0.pth"], None, 2),  # numbered RNG states: at least two processes
        (["noise_generator_rank0.safetensors", "noise_generator_rank2.safetensors"], None, 3),
        (["rng_state.pth", "noise_generator_rank0.safetensors"], None, 1),
        (["rng_state.pth"], None, 1),
        ([], None, None),
    ],
)
def test_the_processes_that_wrote_a_checkpoint_are_its_recorded_count_else_counted_from_its_files(
    tmp_path, files, recorded, expected
):
    assert checkpoint_processes(write_checkpoint(tmp_path / "checkpoint-4", files, recorded)) == expected
