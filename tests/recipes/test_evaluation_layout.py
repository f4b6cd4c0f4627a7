"""Evaluate-only metrics do not depend on how the split is laid out in batches and processes.

One tiny folder per recipe (sentiment, closed-book QA, NCE LM) is trained once, then evaluated with
`do_train false` on a validation split whose size neither 2 nor 3 divides (97 sentences, 37 questions, 137
windows of the sample corpus: on 2 or 3 processes the last batches are short, and padded with repeated examples)
on 1, 2 and 3 processes (one launch of `evaluation_layout_worker.py` each, every recipe and batch size in it) at
`per_device_eval_batch_size` 1, 7 and 64. The loss is the mean over examples (sentiment) or over scored tokens
(the language model) whatever the layout; accuracy, macro F1, exact match, token F1 and the counts are exactly
equal. The log-partition statistics are reported for a model trained by a self-normalising loss only.
"""

import csv
import importlib
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import custom_models  # noqa: F401  (registers the Auto classes)
from recipes.kit.command_line import parse_config
from tests.conftest import accelerate_launch, tiny_overrides

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).parent / "evaluation_layout_worker.py"
PROCESSES, BATCH_SIZES = (1, 2, 3), (1, 7, 64)
SENTIMENT_ROWS, QA_QUESTIONS, NCE_TOKENS = 97, 37, 4399  # NCE: the sample validation stream of 4,400 tokens
SENTIMENT_FILE = REPO / "data" / "samples" / "sentiment" / "validation.tsv"  # its first 97 rows are evaluated
QA_FILE = REPO / "data" / "samples" / "closed_book_qa" / "train.jsonl"  # questions the model was trained on
# Each recipe's training (a few seconds; enough steps that losses differ between examples and some answers are
# right), and the flags of its evaluate-only runs (sentiment also predicts: its files are written by `trained`).
TRAINING = {
    "sentiment": ["--max_steps", "100", "--load_best_model_at_end", "false"],
    "closed_book_qa": ["--max_steps", "150", "--learning_rate", "3e-3", "--max_train_samples", str(QA_QUESTIONS)],
    "nce_lm": ["--max_steps", "20"],
}
EVALUATION = {
    "sentiment": [],
    "closed_book_qa": ["--validation_file", str(QA_FILE), "--max_eval_samples", str(QA_QUESTIONS)],
    "nce_lm": [],
}
# float32 model outputs summed in float64: what the layout changes is the shape of each batch (padding, number of
# rows), which changes the order of float32 sums inside the model by ~1e-7 relative (measured: 2e-9 for the
# sentiment loss, 2e-7 for the NCE loss of 2.6); a mean of batch means weighted wrongly is off by 4e-3 to 1e-2.
LOSS_TOLERANCE = 1e-6


def recipe_main(task: str, argv: list[str]) -> dict[str, float]:
    recipe = importlib.import_module(f"recipes.{task}.train")
    return recipe.main(*parse_config(*recipe.CONFIG_CLASSES, argv=argv))


def tiny_command_line(task: str, output_dir: Path, *flags: str) -> list[str]:
    """`recipes/<task>/configs/tiny.yaml` writing into `output_dir`, a language model's token cache beside it."""
    argv = [str(REPO / "recipes" / task / "configs" / "tiny.yaml"), "--output_dir", str(output_dir), *flags]
    language_model = task in ("nce_lm", "transformer_xl")
    return argv + (["--token_cache_dir", str(output_dir.parent / "token_cache")] if language_model else [])


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder holding one trained model per recipe (`<folder>/<task>`), trained in this process, and the
    sentiment file evaluated (`sentiment.tsv`)."""
    folder = tmp_path_factory.mktemp("evaluation-layout")
    lines = SENTIMENT_FILE.read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "sentiment.tsv").write_text("".join(lines[: 1 + SENTIMENT_ROWS]), encoding="utf-8")  # header + rows
    for task, flags in TRAINING.items():
        no_evaluation = ["--do_eval", "false", "--eval_strategy", "no", "--save_strategy", "no"]
        recipe_main(task, tiny_command_line(task, folder / task, *tiny_overrides(task), *no_evaluation, *flags))
    return folder


@pytest.fixture(scope="module")
def evaluated(trained) -> dict[tuple[str, int, int], dict[str, float]]:
    """`{(task, processes, batch size): metrics}` of every evaluate-only run, as rank 0 returned them."""
    runs = {}
    sentiment_file = str(trained / "sentiment.tsv")  # evaluated and predicted (with its labels): eval_ and predict_
    sentiment_flags = ["--validation_file", sentiment_file, "--do_predict", "true", "--test_file", sentiment_file]
    for processes in PROCESSES:
        folder = trained / f"launch-{processes}"
        folder.mkdir()
        command_lines = {
            f"{task}/{batch_size}": [
                task,
                tiny_command_line(
                    task,
                    folder / f"{task}-{batch_size}",
                    *["--do_train", "false", "--train_file", "", "--config_overrides", ""],
                    *["--model_name_or_path", str(trained / task), "--per_device_eval_batch_size", str(batch_size)],
                    *flags,
                    *(sentiment_flags if task == "sentiment" else []),
                ),
            ]
            for task, flags in EVALUATION.items()
            for batch_size in BATCH_SIZES
        }
        (folder / "command_lines.json").write_text(json.dumps(command_lines))
        accelerate_launch(WORKER, str(folder), str(folder / "command_lines.json"), num_processes=processes)
        reports = [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(processes)]
        assert [report["world_size"] for report in reports] == [processes] * processes  # really that many
        for name, metrics in reports[0]["metrics"].items():
            task, batch_size = name.split("/")
            runs[task, processes, int(batch_size)] = metrics
    return runs


def layouts(task: str) -> list[tuple[str, int, int]]:
    return [(task, processes, batch_size) for processes in PROCESSES for batch_size in BATCH_SIZES]


def example_losses_alone(folder: Path, rows: int) -> list[float]:
    """The loss of the model in `folder` on each of the first `rows` validation sentences, one at a time."""
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with open(SENTIMENT_FILE, encoding="utf-8", newline="") as file:
        examples = list(csv.DictReader(file, delimiter="\t"))[:rows]
    losses = []
    with torch.no_grad():
        for example in examples:
            inputs = tokenizer(example["sentence"], truncation=True, max_length=64, return_tensors="pt")
            losses.append(model(**inputs, labels=torch.tensor([int(example["label"])])).loss.item())
    return losses


@pytest.mark.slow
def test_sentiment_loss_is_the_mean_over_examples_on_any_layout(trained, evaluated):
    losses = example_losses_alone(trained / "sentiment", SENTIMENT_ROWS)
    expected = sum(losses) / len(losses)
    first = evaluated["sentiment", 1, 1]
    for layout in layouts("sentiment"):
        metrics = evaluated[layout]
        for prefix in ("eval", "predict"):  # the same 97 sentences, labelled, as validation and test split
            assert metrics[f"{prefix}_loss"] == pytest.approx(expected, abs=LOSS_TOLERANCE), (layout, prefix)
            for name in ("accuracy", "macro_f1"):
                assert metrics[f"{prefix}_{name}"] == first[f"eval_{name}"], (layout, prefix, name)


@pytest.mark.slow
def test_closed_book_qa_scores_each_question_once_on_any_layout(evaluated):
    first = evaluated["closed_book_qa", 1, 1]
    assert 0 < first["eval_exact_match"] < 1  # some answers right, some wrong: a difference would show
    for layout in layouts("closed_book_qa"):
        metrics = evaluated[layout]
        assert metrics["eval_samples"] == QA_QUESTIONS, layout
        assert (metrics["eval_exact_match"], metrics["eval_f1"]) == (first["eval_exact_match"], first["eval_f1"])
        assert "eval_loss" not in metrics  # evaluated by generation: no loss to report


@pytest.mark.slow
def test_nce_lm_loss_is_token_sums_over_counts_on_any_layout(evaluated):
    first = evaluated["nce_lm", 1, 1]
    for layout in layouts("nce_lm"):
        metrics = evaluated[layout]
        assert metrics["eval_tokens"] == NCE_TOKENS, layout
        for name in ("loss", "log_partition_mean", "log_partition_std"):
            assert metrics[f"eval_{name}"] == pytest.approx(first[f"eval_{name}"], abs=LOSS_TOLERANCE), (layout, name)
        # a count of tokens with |log Z| > 1: exact unless a log Z lies within ~1e-7 of the threshold
        assert metrics["eval_log_partition_outlier_fraction"] == first["eval_log_partition_outlier_fraction"]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["nce_lm", "transformer_xl"])
@pytest.mark.parametrize("loss_type", ["full", "nce"])
def test_log_partition_statistics_are_reported_for_a_self_normalising_loss_only(tmp_path, task, loss_type):
    flags = [*tiny_overrides(task), "--max_steps", "2", "--save_strategy", "no", "--loss_type", loss_type]
    flags += ["--num_noise_samples", "16"] if loss_type == "nce" else []
    metrics = recipe_main(task, tiny_command_line(task, tmp_path / "out", *flags))
    names = {"eval_log_partition_mean", "eval_log_partition_std", "eval_log_partition_outlier_fraction"}
    assert "eval_loss" in metrics
    assert names & metrics.keys() == (names if loss_type == "nce" else set()), sorted(metrics)
