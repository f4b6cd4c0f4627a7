"""Train, evaluate, predict: every recipe evaluates a trained folder without training, and predicts new
files in input order on any number of processes."""

import importlib
import json
import logging
from pathlib import Path

import pytest

from data.errors import DataError
from recipes.kit.command_line import parse_config

REPO = Path(__file__).resolve().parents[2]
TASKS = ("sentiment", "closed_book_qa", "nce_lm", "transformer_xl")
#: What each recipe reports at the end of training, and an evaluation-only run must reproduce.
EVAL_METRICS = {
    "sentiment": ("eval_loss", "eval_accuracy", "eval_macro_f1"),
    "closed_book_qa": ("eval_exact_match", "eval_f1", "eval_samples"),
    "nce_lm": ("eval_loss", "eval_perplexity", "eval_tokens", "eval_log_partition_mean"),
    "transformer_xl": ("eval_loss", "eval_perplexity", "eval_tokens"),
}
#: Seven inputs (odd, so two processes get unequal shares) in each recipe's test-file layout.
SENTENCES = [
    "a moving and funny film",
    "dull",
    "the cast is wonderful",
    "i wanted to leave",
    "a mess",
    "charming from start to end",
    "not worth the ticket",
]
QUESTIONS = [
    "who wrote hamlet",
    "what is the capital of france",
    "when did the war end",
    "who painted the mona lisa",
    "where is mount everest",
    "what is the largest ocean",
    "who discovered penicillin",
]
PROMPTS = ["the", "in the morning", "she said that", "river", "the old man", "a", "after the war the"]


def run(task: str, *flags: str) -> dict:
    """`recipes/<task>/train.py` on its tiny.yaml with `flags`, in this process."""
    recipe = importlib.import_module(f"recipes.{task}.train")
    argv = [str(REPO / "recipes" / task / "configs" / "tiny.yaml"), *map(str, flags)]
    return recipe.main(*parse_config(*recipe.CONFIG_CLASSES, argv=argv))


def write_test_file(task: str, folder: Path, *, labelled: bool) -> Path:
    """The seven inputs as the recipe's `test_file`, with labels / answers when `labelled`."""
    if task == "sentiment":
        path = folder / "test.tsv"
        rows = [f"{s}\t{'positive' if i % 2 == 0 else 'negative'}" for i, s in enumerate(SENTENCES)]
        path.write_text(
            "sentence\tlabel\n" + "\n".join(rows) + "\n" if labelled else "sentence\n" + "\n".join(SENTENCES) + "\n"
        )
    elif task == "closed_book_qa":
        path = folder / "test.jsonl"
        rows = [{"question": q, **({"answer": ["paris"]} if labelled else {})} for q in QUESTIONS]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        path = folder / "prompts.txt"
        path.write_text("\n".join(PROMPTS) + "\n")
    return path


def predict_only(trained: Path, output_dir: Path, test_file: Path) -> list[str]:
    """The flags of a predict-only run of the trained folder on `test_file`."""
    flags = {
        "output_dir": output_dir,
        "model_name_or_path": trained,
        "do_train": "false",
        "do_eval": "false",
        "do_predict": "true",
        "test_file": test_file,
    }
    return [str(part) for name, value in flags.items() for part in (f"--{name}", value)]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def inputs_of(task: str, rows: list[dict]) -> list[str]:
    key = {"sentiment": "text", "closed_book_qa": "question"}.get(task, "prompt")
    return [row[key] for row in rows]


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_evaluating_a_trained_folder_reproduces_its_metrics_and_trains_nothing(task, tiny_run, tmp_path, caplog):
    trained = tiny_run(task)
    reported = json.loads((trained / "eval_results.json").read_text())
    output_dir = tmp_path / "evaluated"
    caplog.clear()  # only this run's messages
    with caplog.at_level(logging.INFO):
        metrics = run(task, "--output_dir", output_dir, "--do_train", "false", "--model_name_or_path", trained)
    for key in EVAL_METRICS[task]:
        assert metrics[key] == pytest.approx(reported[key], abs=1e-6), key
    written = sorted(path.name for path in output_dir.iterdir())
    expected = ["all_results.json", "eval_results.json"] + (
        ["eval_predictions.jsonl"] if task == "closed_book_qa" else []
    )
    assert written == sorted(expected)  # no checkpoint, no model, no tokenizer
    assert f"tokenizer: loaded from {trained}" in caplog.text and "tokenizer: training" not in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_two_processes_predict_each_line_once_in_input_order(task, tiny_run, tmp_path, launch):
    test_file = write_test_file(task, tmp_path, labelled=False)
    output_dir = tmp_path / "predicted"
    short_answers = [] if task == "sentiment" else ["--max_new_tokens", "3"]
    recipe = REPO / "recipes" / task
    argv = [*predict_only(tiny_run(task), output_dir, test_file), "--per_device_eval_batch_size", "2", *short_answers]
    launch(recipe / "train.py", str(recipe / "configs" / "tiny.yaml"), *argv)
    rows = read_jsonl(output_dir / "predictions.jsonl")
    expected = {"sentiment": SENTENCES, "closed_book_qa": QUESTIONS}.get(task, PROMPTS)
    assert inputs_of(task, rows) == expected


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sentiment", "closed_book_qa"])
def test_a_test_file_predicts_without_labels_and_scores_with_them(task, tiny_run, tmp_path):
    for labelled in (False, True):
        output_dir = tmp_path / f"labelled_{labelled}"
        test_file = write_test_file(task, tmp_path, labelled=labelled)
        metrics = run(task, *predict_only(tiny_run(task), output_dir, test_file))
        rows = read_jsonl(output_dir / "predictions.jsonl")
        assert inputs_of(task, rows) == (SENTENCES if task == "sentiment" else QUESTIONS)
        scored = (output_dir / "predict_results.json").is_file()
        assert scored == labelled
        if task == "sentiment":
            assert all(row["label"] in ("negative", "positive") and 0.5 <= row["probability"] <= 1 for row in rows)
            if labelled:
                correct = [row["label"] == ("positive" if i % 2 == 0 else "negative") for i, row in enumerate(rows)]
                assert metrics["predict_accuracy"] == pytest.approx(sum(correct) / len(rows))
        elif labelled:
            assert metrics["predict_exact_match"] == pytest.approx(sum(row["em"] for row in rows) / len(rows))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "content", "message"),
    [
        ("sentiment", "sentence\tlabel\nfine\t1\n\t0\n", r"test\.tsv, line 3: column 'sentence' is empty"),
        ("sentiment", "sentence\tlabel\nfine\t1\nbad\t\n", r"test\.tsv, line 3: no 'label', but"),
        ("closed_book_qa", '{"question": "q1"}\n{"question": "q2"\n', r"test\.jsonl, line 2"),
        ("nce_lm", "the\n\nriver\n", r"prompts\.txt, line 2: empty prompt"),
        ("transformer_xl", "the\n   \n", r"prompts\.txt, line 2: empty prompt"),
    ],
)
def test_a_malformed_or_missing_test_file_fails_naming_file_and_line(task, content, message, tiny_run, tmp_path):
    name = {"sentiment": "test.tsv", "closed_book_qa": "test.jsonl"}.get(task, "prompts.txt")
    with pytest.raises(DataError, match=r"missing\.txt: no such file"):
        run(task, *predict_only(tiny_run(task), tmp_path / "out", tmp_path / "missing.txt"))
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        run(task, *predict_only(tiny_run(task), tmp_path / "out", tmp_path / name))
