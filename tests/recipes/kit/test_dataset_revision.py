"""`dataset_revision` (and a mixture entry's `revision`): passed to `datasets.load_dataset` by every recipe's data
step, part of the data caches' keys, and recorded in the model card (front matter, Data line, resolved
configuration); the refusals at parse time: tests/recipes/kit/test_arguments.py.

`datasets.load_dataset` is a stand-in here (offline): it records the revision it is given and returns splits
memory-mapped from Arrow files in a folder named after the revision, as `datasets` keeps a Hub data set (under
`<name>/<config>/<version>/<commit of the revision>/`, `datasets.builder.DatasetBuilder._relative_data_dir`)."""

import json
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from huggingface_hub import ModelCard

from data.closed_book_qa import load_qa_dataset
from data.loading import split_sources
from data.sentiment import load_sentiment_dataset
from recipes import closed_book_qa, sentiment, transformer_xl
from recipes.closed_book_qa.train import CONFIG_CLASSES as QA_CLASSES
from recipes.kit.command_line import parse_config
from recipes.kit.data_steps import describe_data, load_corpus, load_task_splits, load_tokenizer_and_streams
from recipes.sentiment.train import CONFIG_CLASSES as SENTIMENT_CLASSES
from recipes.sentiment.train import main as sentiment_main
from recipes.transformer_xl.train import CONFIG_CLASSES as TXL_CLASSES
from tests.conftest import yaml_without

SENTIMENT_YAML = Path(sentiment.__file__).parent / "configs" / "tiny.yaml"
QA_YAML = Path(closed_book_qa.__file__).parent / "configs" / "tiny.yaml"
TXL_YAML = Path(transformer_xl.__file__).parent / "configs" / "tiny.yaml"
#: The rows of every split of the stand-in data set: the columns of every task's tiny config.
HUB_ROWS = 20
HUB_COLUMNS = {
    "sentence": [f"{'good' if i % 2 else 'bad'} film {i}" for i in range(HUB_ROWS)],
    "label": [i % 2 for i in range(HUB_ROWS)],
    "question": [f"question {i}?" for i in range(HUB_ROWS)],
    "answer": [[f"answer {i}"] for i in range(HUB_ROWS)],
    "text": [f"the line {i} of the corpus" for i in range(HUB_ROWS)],
}


class HubStandIn:
    """`datasets.load_dataset(path, name, revision=...)` offline: `calls` holds `(path, name, revision)` of each call;
    every revision's splits hold the same rows, in their own folder."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.calls = folder, []

    def __call__(self, path: str, name: str | None = None, *, revision: str | None = None) -> datasets.DatasetDict:
        self.calls.append((path, name, revision))
        folder = self.folder / path.replace("/", "___") / (revision or "default-branch")
        if not folder.is_dir():
            splits = {split: datasets.Dataset.from_dict(HUB_COLUMNS) for split in ("train", "validation", "test")}
            datasets.DatasetDict(splits).save_to_disk(str(folder))
        return datasets.load_from_disk(str(folder))


@pytest.fixture
def hub(tmp_path, monkeypatch) -> HubStandIn:
    stand_in = HubStandIn(tmp_path / "hub")
    monkeypatch.setattr(datasets, "load_dataset", stand_in)
    return stand_in


def hub_args(classes: tuple, config: Path, tmp_path: Path, *flags: str) -> tuple:
    """The recipe's tiny config without its local files, reading the Hub data set `stand-in/data`."""
    config = yaml_without(config, tmp_path, "train_file", "validation_file")
    argv = [config, "--output_dir", str(tmp_path / "out"), "--dataset_name", "stand-in/data", *flags]
    return parse_config(*classes, argv=argv)


ROW_RECIPES = {
    "sentiment": (
        SENTIMENT_CLASSES,
        SENTIMENT_YAML,
        load_sentiment_dataset,
        lambda model_args, data_args: {
            "text_column": data_args.text_column,
            "label_column": data_args.label_column,
            "label_names": model_args.class_names,
        },
    ),
    "closed_book_qa": (
        QA_CLASSES,
        QA_YAML,
        load_qa_dataset,
        lambda model_args, data_args: {
            "question_column": data_args.question_column,
            "answer_column": data_args.answer_column,
        },
    ),
}


@pytest.mark.parametrize("revision", [None, "v1.0"])
@pytest.mark.parametrize("task", ROW_RECIPES)
def test_a_row_recipe_reads_its_hub_data_set_at_the_revision(tmp_path, hub, task, revision):
    classes, config, load_task, columns = ROW_RECIPES[task]
    args = hub_args(classes, config, tmp_path, *(["--dataset_revision", revision] if revision else []))
    model_args, data_args, training_args = args[0], args[1], args[-1]
    splits = load_task_splits(load_task, data_args, training_args, **columns(model_args, data_args))
    assert hub.calls == [("stand-in/data", None, revision)]  # None: the Hub's default branch
    assert (len(splits["train"]), len(splits["validation"])) == (HUB_ROWS, HUB_ROWS)
    assert describe_data(data_args) == ("`stand-in/data@v1.0`" if revision else "`stand-in/data`")


def test_the_rows_cache_is_keyed_by_the_revision(tmp_path, hub):
    identity = {
        revision: split_sources(dataset_name="stand-in/data", dataset_revision=revision)["train"].identity()
        for revision in ("v1.0", "v2.0")
    }
    again = split_sources(dataset_name="stand-in/data", dataset_revision="v1.0")["train"].identity()
    assert identity["v1.0"] != identity["v2.0"] and again == identity["v1.0"]  # the same rows, another revision
    assert "v1.0" in json.dumps(identity["v1.0"]) and "v2.0" not in json.dumps(identity["v1.0"])


def test_a_mixture_entry_reads_its_hub_source_at_its_revision(tmp_path, hub):
    local = tmp_path / "a.tsv"
    local.write_text("sentence\tlabel\n" + "".join(f"a {i}\t{i % 2}\n" for i in range(10)), encoding="utf-8")
    entries = [{"path": "stand-in/sst2", "weight": 0.5, "revision": "abc123"}, {"path": str(local)}]
    config = yaml_without(SENTIMENT_YAML, tmp_path, "train_file")  # validation: the sample file
    argv = [config, "--output_dir", str(tmp_path / "out"), "--dataset_mixture", json.dumps(entries)]
    model_args, data_args, _, training_args = parse_config(*SENTIMENT_CLASSES, argv=argv)
    splits = load_task_splits(load_sentiment_dataset, data_args, training_args, label_names=model_args.class_names)
    assert hub.calls == [("stand-in/sst2", None, "abc123")]
    assert len(splits["train"]) == HUB_ROWS // 2 + 10
    assert describe_data(data_args) == f"mixture of `stand-in/sst2@abc123 [train]` (0.5), `{local}` (1)"


def test_a_language_model_reads_its_corpus_at_the_revision_and_caches_its_tokens_per_revision(tmp_path, hub):
    cache = tmp_path / "token_cache"

    def token_streams(revision: str) -> dict[str, torch.Tensor]:
        flags = ["--dataset_revision", revision, "--token_cache_dir", str(cache)]
        model_args, data_args, _, training_args = hub_args(TXL_CLASSES, TXL_YAML, tmp_path, *flags)
        corpus = load_corpus(data_args, training_args)
        return load_tokenizer_and_streams(model_args, data_args, corpus, training_args, kind="word")[1]

    first = token_streams("v1.0")
    files = set(cache.glob("*.npy"))
    assert torch.equal(token_streams("v1.0")["train"], first["train"]) and set(cache.glob("*.npy")) == files
    other = token_streams("v2.0")  # the same lines at another revision: tokenised into files of its own
    assert torch.equal(other["train"], first["train"]) and len(set(cache.glob("*.npy")) - files) == len(files)
    assert [revision for _, _, revision in hub.calls] == ["v1.0", "v1.0", "v2.0"]


@pytest.mark.slow
def test_the_card_of_a_run_on_a_pinned_hub_data_set_names_the_revision(tmp_path, hub):
    flags = ["--dataset_revision", "v1.0", "--max_steps", "1", "--eval_strategy", "no", "--save_strategy", "no"]
    flags += ["--load_best_model_at_end", "false"]
    sentiment_main(*hub_args(SENTIMENT_CLASSES, SENTIMENT_YAML, tmp_path, *flags))
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.datasets == ["stand-in/data"] and card.data.dataset_revision == "v1.0"
    assert "`stand-in/data@v1.0`: 20 training sentences" in card.text
    resolved = card.text.split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(resolved)["dataset_revision"] == "v1.0"
    assert hub.calls == [("stand-in/data", None, "v1.0")]
