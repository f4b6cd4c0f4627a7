"""The data steps (`recipes.kit.data_steps`): a validation split carved from the training data
(`validation_split_percentage`) and a weighted `dataset_mixture`, through each recipe's own parsing and data step
(the refusals of these fields at parse time: tests/recipes/kit/test_arguments.py)."""

import json
import logging
from pathlib import Path

import pytest
import torch

from data.closed_book_qa import load_qa_dataset
from recipes import closed_book_qa, sentiment, transformer_xl
from recipes.closed_book_qa.train import CONFIG_CLASSES as QA_CLASSES
from recipes.kit.command_line import parse_config
from recipes.kit.data_steps import load_corpus, load_task_splits, load_tokenizer_and_streams
from recipes.sentiment.train import CONFIG_CLASSES as SENTIMENT_CLASSES
from recipes.sentiment.train import main as sentiment_main
from recipes.transformer_xl.train import CONFIG_CLASSES as TXL_CLASSES
from tests.conftest import yaml_without

SENTIMENT_YAML = Path(sentiment.__file__).parent / "configs" / "tiny.yaml"
QA_YAML = Path(closed_book_qa.__file__).parent / "configs" / "tiny.yaml"
TXL_YAML = Path(transformer_xl.__file__).parent / "configs" / "tiny.yaml"


def sentiment_file(path: Path, source: str, rows: int) -> str:
    lines = ["sentence\tlabel", *(f"{source} sentence {i}\t{i % 2}" for i in range(rows))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_qa_without_a_validation_file_evaluates_on_a_seeded_tenth_of_the_training_questions(tmp_path):
    rows = [{"question": f"question {i}?", "answer": [f"answer {i}"]} for i in range(205)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    config = yaml_without(QA_YAML, tmp_path, "validation_file")
    argv = [config, "--output_dir", str(tmp_path / "out"), "--train_file", str(train)]
    _, data_args, _, _, training_args = parse_config(*QA_CLASSES, argv=[*argv, "--validation_split_percentage", "10"])
    splits = load_task_splits(load_qa_dataset, data_args, training_args)
    again = load_task_splits(load_qa_dataset, data_args, training_args)
    # floor(205 * 10 / 100) = 20 validation questions, 185 training questions, disjoint, the same every time.
    assert (len(splits["train"]), len(splits["validation"])) == (185, 20)
    assert set(splits["train"]["question"]).isdisjoint(splits["validation"]["question"])
    assert list(splits["validation"]["question"]) == list(again["validation"]["question"])


def test_a_language_model_validates_on_the_last_tenth_of_its_training_tokens(tmp_path):
    config = yaml_without(TXL_YAML, tmp_path, "validation_file")
    argv = [config, "--output_dir", str(tmp_path / "out"), "--token_cache_dir", str(tmp_path / "cache")]

    def token_streams(*flags: str) -> dict[str, torch.Tensor]:
        model_args, data_args, _, training_args = parse_config(*TXL_CLASSES, argv=[*argv, *flags])
        corpus = load_corpus(data_args, training_args)
        assert "validation" not in corpus
        return load_tokenizer_and_streams(model_args, data_args, corpus, training_args, kind="word")[1]

    whole = token_streams()["train"]
    carved = token_streams("--validation_split_percentage", "10")
    tail = whole.numel() * 10 // 100  # floor(tokens * 10 / 100), contiguous at the end
    assert tail > 0 and torch.equal(carved["validation"], whole[-tail:]) and torch.equal(carved["train"], whole[:-tail])


@pytest.mark.slow
def test_the_sentiment_recipe_trains_on_a_weighted_mixture_and_validates_on_a_tenth_of_it(tmp_path, caplog):
    a, b = sentiment_file(tmp_path / "a.tsv", "a", 200), sentiment_file(tmp_path / "b.tsv", "b", 200)
    mixture = f"dataset_mixture:\n  - {{path: {a}, weight: 0.75}}\n  - {{path: {b}, weight: 0.25}}\n"
    config = yaml_without(SENTIMENT_YAML, tmp_path, "train_file", "validation_file", extra=mixture)
    flags = ["--validation_split_percentage", "10", "--max_steps", "1", "--eval_strategy", "no", "--save_strategy"]
    flags += ["no", "--load_best_model_at_end", "false"]
    caplog.set_level(logging.INFO, logger="data")
    sentiment_main(*parse_config(*SENTIMENT_CLASSES, argv=[config, "--output_dir", str(tmp_path / "out"), *flags]))
    # 150 rows of a.tsv + 50 of b.tsv = 200; floor(200 * 10 / 100) = 20 of them validate, 180 train.
    assert "dataset_mixture: 200 training rows from 2 sources" in caplog.text
    assert "validation_split_percentage 10: 180 training rows, 20 validation rows (seed 42)" in caplog.text
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"mixture of `{a}` (0.75), `{b}` (0.25): 180 training sentences" in card
    assert (tmp_path / "out" / "eval_results.json").is_file()
