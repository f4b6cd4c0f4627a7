"""Text classification data beyond one sentence and one label (`data.sentiment`, `data.class_labels`): text pairs,
multi-label sets, regression scores, bad rows named by file and line, and the GLUE layouts of the Hub."""

import functools

import datasets
import pytest

from data.errors import DataError
from data.sentiment import load_sentiment_dataset, tokenize_sentences
from data.splits import validation_split_names
from data.tokenizers import train_tokenizer
from tests.data.test_columnar_rows import load_both
from tests.data.test_loaders import write

NAMES = ["sports", "politics", "science"]
MULTI_LABEL = functools.partial(load_sentiment_dataset, label_names=NAMES, problem_type="multi_label_classification")
REGRESSION = functools.partial(load_sentiment_dataset, problem_type="regression")
PAIRS = functools.partial(load_sentiment_dataset, text_column="premise", text_pair_column="hypothesis")


def test_pairs_load_with_both_texts_in_every_format(tmp_path):
    tsv = write(tmp_path / "a.tsv", "premise\thypothesis\tlabel\na cat sat\ta cat\t1\nno dog\tdogs ran\tnegative\n")
    jsonl = write(
        tmp_path / "a.jsonl",
        '{"premise": "a cat sat", "hypothesis": "a cat", "label": 1}\n'
        '{"premise": "no dog", "hypothesis": "dogs ran", "label": "negative"}\n',
    )
    expected = [
        {"text": "a cat sat", "text_pair": "a cat", "label": 1},
        {"text": "no dog", "text_pair": "dogs ran", "label": 0},
    ]
    assert PAIRS(train_file=tsv)["train"].to_list() == expected
    assert PAIRS(train_file=jsonl)["train"].to_list() == expected


def test_pair_columns_equal_the_rows(tmp_path, monkeypatch):
    content = "premise\thypothesis\tlabel\n  a cat \tthe cat\t positive\nno dog\t\x1cdogs\t0\n"
    columnar, rows = load_both(PAIRS, tmp_path, "pairs.tsv", content, monkeypatch)
    assert columnar == rows and [row["text_pair"] for row in rows] == ["the cat", "\x1cdogs"]


def test_pairs_are_encoded_as_pairs_and_the_longer_text_is_truncated_first(tmp_path):
    tsv = write(tmp_path / "a.tsv", "premise\thypothesis\tlabel\nred cat dog bird runs fast\tblue dog\t1\n")
    rows = PAIRS(train_file=tsv)["train"]
    tokenizer = train_tokenizer(["red cat dog bird runs fast blue"], kind="wordpiece", vocab_size=60)
    (features,) = tokenize_sentences(rows, tokenizer, max_seq_length=8).to_list()
    # [CLS] 3 of the premise's 6 words [SEP] the whole 2-word hypothesis [SEP]: 8 tokens, the premise cut
    assert tokenizer.decode(features["input_ids"]) == "[CLS] red cat dog [SEP] blue dog [SEP]"
    assert features["label"] == 1


def test_multi_label_sets_as_json_lists_or_separated_names_become_the_same_multi_hot_vectors(tmp_path):
    jsonl = write(
        tmp_path / "a.jsonl",
        '{"sentence": "a", "label": ["sports", "science"]}\n{"sentence": "b", "label": [1]}\n'
        '{"sentence": "c", "label": []}\n{"sentence": "d", "label": "politics,0"}\n',
    )
    tsv = write(tmp_path / "a.tsv", "sentence\tlabel\na\tsports, science\nb\t1\nc\t[]\nd\tpolitics,0\n")
    expected = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]
    assert MULTI_LABEL(train_file=jsonl)["train"]["label"] == expected
    with pytest.raises(DataError, match=r"a\.tsv, line 4: label '\[\]' is not in the label set"):
        MULTI_LABEL(train_file=tsv)  # `[]` is JSON's empty set; in a cell it is no label name
    tsv = write(tmp_path / "a.tsv", "sentence\tlabel\na\tsports, science\nb\t1\nd\tpolitics,0\n")
    assert MULTI_LABEL(train_file=tsv)["train"]["label"] == [expected[0], expected[1], expected[3]]


def test_the_label_separator_is_an_option(tmp_path):
    csv = write(tmp_path / "a.csv", 'sentence,label\n"one, two",sports;science\n')
    assert MULTI_LABEL(train_file=csv, label_separator=";")["train"]["label"] == [[1.0, 0.0, 1.0]]
    with pytest.raises(DataError, match=r"a\.csv, line 2: label 'sports;science' is not in the label set"):
        MULTI_LABEL(train_file=csv)  # the default "," leaves one unknown name


def test_regression_labels_are_floats_from_numbers_or_text(tmp_path):
    jsonl = write(tmp_path / "a.jsonl", '{"sentence": "a", "label": 3.8}\n{"sentence": "b", "label": " -1.25 "}\n')
    assert REGRESSION(train_file=jsonl)["train"]["label"] == pytest.approx([3.8, -1.25], rel=1e-7)  # float32


@pytest.mark.parametrize(
    ("loader", "name", "content", "message"),
    [
        (MULTI_LABEL, "a.jsonl", '{"sentence": "a", "label": ["sports"]}\n{"sentence": "b", "label": ["art"]}\n',
         r"a\.jsonl, line 2: label 'art' is not in the label set"),
        (MULTI_LABEL, "a.tsv", "sentence\tlabel\na\tsports\nb\tpolitics,art\n",
         r"a\.tsv, line 3: label 'art' is not in the label set"),
        (MULTI_LABEL, "a.jsonl", '{"sentence": "a", "label": [7]}\n',
         r"a\.jsonl, line 1: label 7 is not in the label set"),
        (MULTI_LABEL, "a.jsonl", '{"sentence": "a", "label": {"sports": 1}}\n',
         r"a\.jsonl, line 1: label \{'sports': 1\} is not a list of labels"),
        (REGRESSION, "a.tsv", "sentence\tlabel\na\t1.5\nb\thigh\n", r"a\.tsv, line 3: label 'high' is not a number"),
        (REGRESSION, "a.jsonl", '{"sentence": "a", "label": true}\n', r"a\.jsonl, line 1: label True is not a number"),
        (REGRESSION, "a.tsv", "sentence\tlabel\na\tnan\n", r"a\.tsv, line 2: label 'nan' is not a finite number"),
        (REGRESSION, "a.csv", "sentence,label\na,1\nb,-inf\n", r"a\.csv, line 3: label '-inf' is not a finite number"),
        (PAIRS, "a.tsv", "premise\thypothesis\tlabel\na cat\ta cat\t1\nno dog\t \t0\n",
         r"a\.tsv, line 3: column 'hypothesis' is empty"),
        (PAIRS, "a.jsonl", '{"premise": "a cat", "hypothesis": null, "label": 1}\n',
         r"a\.jsonl, line 1: column 'hypothesis' is empty"),
    ],
)  # fmt: skip
def test_bad_rows_name_file_and_line(tmp_path, loader, name, content, message):
    with pytest.raises(DataError, match=message):
        loader(train_file=write(tmp_path / name, content))


def test_in_a_regression_test_split_minus_one_is_a_score_and_only_blank_is_no_label(tmp_path):
    labelled = write(tmp_path / "a.tsv", "sentence\tlabel\na\t-1\nb\t2\n")
    assert REGRESSION(test_file=labelled)["test"]["label"] == [-1.0, 2.0]
    unlabelled = write(tmp_path / "b.tsv", "sentence\tlabel\na\t\nb\t\n")
    assert REGRESSION(test_file=unlabelled)["test"].column_names == ["text"]
    hidden = write(tmp_path / "c.tsv", "sentence\tlabel\na\t-1\nb\t-1\n")  # GLUE's hidden labels, classified
    assert MULTI_LABEL(test_file=hidden)["test"].column_names == ["text"]


def test_validation_split_names():
    assert validation_split_names(["train", "validation", "validation_matched"]) == ["validation"]
    assert validation_split_names(["validation_mismatched", "train", "validation_matched", "test_matched"]) == [
        "validation_matched",
        "validation_mismatched",
    ]
    assert validation_split_names(["train", "test"]) == []


# The GLUE configs of the Hub's nyu-mll/glue, as `load_dataset` returns them (columns, split names, label feature),
# each split holding two made-up rows. GLUE's test labels are hidden: -1.
GLUE = {
    "mnli": (("premise", "hypothesis"), ["entailment", "neutral", "contradiction"],
             ["train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched"]),
    "qqp": (("question1", "question2"), ["not_duplicate", "duplicate"], ["train", "validation", "test"]),
    "mrpc": (("sentence1", "sentence2"), ["not_equivalent", "equivalent"], ["train", "validation", "test"]),
    "stsb": (("sentence1", "sentence2"), None, ["train", "validation", "test"]),
}  # fmt: skip


def glue_stand_in(config: str) -> datasets.DatasetDict:
    """What `datasets.load_dataset("nyu-mll/glue", config)` gives for `config`, with two rows per split."""
    (first, second), names, splits = GLUE[config]
    label = datasets.Value("float32") if names is None else datasets.ClassLabel(names=names)
    features = datasets.Features(
        {
            first: datasets.Value("string"),
            second: datasets.Value("string"),
            "label": label,
            "idx": datasets.Value("int32"),
        }
    )

    def rows(split: str) -> dict[str, list]:
        labels = [-1, -1] if split.startswith("test") else ([1.5, 4.0] if names is None else [len(names) - 1, 0])
        return {first: [f"{split} one", f"{split} two"], second: ["a b", "c d"], "label": labels, "idx": [0, 1]}

    return datasets.DatasetDict({split: datasets.Dataset.from_dict(rows(split), features=features) for split in splits})


@pytest.fixture
def glue_hub(monkeypatch):
    """`datasets.load_dataset` answering for nyu-mll/glue only, offline; the calls it got in `calls`."""
    calls = []

    def load_dataset(name, config=None, **kwargs):
        calls.append((name, config))
        assert name == "nyu-mll/glue", name
        return glue_stand_in(config)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


@pytest.mark.parametrize("config", sorted(GLUE))
def test_glue_layouts_from_the_hub_map_columns_and_splits(glue_hub, config):
    (first, second), names, splits = GLUE[config]
    loaded = load_sentiment_dataset(
        dataset_name="nyu-mll/glue",
        dataset_config_name=config,
        text_column=first,
        text_pair_column=second,
        label_names=names or ["negative", "positive"],
        problem_type="regression" if names is None else "single_label_classification",
    )
    assert glue_hub == [("nyu-mll/glue", config)]
    validation = validation_split_names(splits)
    assert sorted(loaded) == sorted(["train", *validation, *(["test"] if "test" in splits else [])])
    for split in validation:
        rows = loaded[split].to_list()
        assert [(row["text"], row["text_pair"]) for row in rows] == [(f"{split} one", "a b"), (f"{split} two", "c d")]
        assert [row["label"] for row in rows] == ([1.5, 4.0] if names is None else [len(names) - 1, 0])
    if config == "stsb":
        assert loaded["test"]["label"] == [-1.0, -1.0]  # regression: -1 is a score (module docstring of class_labels)
    elif "test" in loaded:
        assert loaded["test"].column_names == ["text", "text_pair"]  # hidden labels: none to score


@pytest.mark.parametrize("config", sorted(GLUE))
def test_glue_layouts_from_local_files_load_as_from_the_hub(glue_hub, tmp_path, config):
    """The Hub's splits written as local jsonl files (`Dataset.to_json`: labels as ids) load with the same flags
    into the same rows."""
    (first, second), names, splits = GLUE[config]
    hub = glue_stand_in(config)
    validation = validation_split_names(splits)[0]  # local files: one validation_file (MNLI: matched, say)
    files = {}
    for split, flag in (("train", "train_file"), (validation, "validation_file")):
        hub[split].to_json(tmp_path / f"{split}.jsonl")
        files[flag] = str(tmp_path / f"{split}.jsonl")
    options = dict(
        text_column=first,
        text_pair_column=second,
        label_names=names or ["negative", "positive"],
        problem_type="regression" if names is None else "single_label_classification",
    )
    local = load_sentiment_dataset(**files, **options)
    from_hub = load_sentiment_dataset(dataset_name="nyu-mll/glue", dataset_config_name=config, **options)
    assert local["train"].to_list() == from_hub["train"].to_list()
    assert local["validation"].to_list() == from_hub[validation].to_list()
