"""Local `.parquet` files in every loader: records with their columns' types, named by row (`a.parquet, row 2`, from
0); the columnar path reads typed columns with exactly the row path's results and leaves every row it does not take
to the row path, which names it; a language-model corpus is read from its text column a batch at a time; a parquet
path in a mixture is a local file."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import data.files
from data.closed_book_qa import load_qa_dataset
from data.errors import DataError
from data.files import read_records
from data.lm_corpus import prompt_lines, text_corpus_splits
from data.mixtures import load_mixture, mixture_sources
from data.sentiment import load_sentiment_dataset
from data.token_cache import prepare_token_streams, train_tokenizer_once
from tests.data.test_columnar_rows import load_both
from tests.data.test_loaders import write

# Typed columns as parquet keeps them: integer labels of a narrow type, labels as names or ids in strings, lists of
# answers with a null, an empty and a repeated answer inside, whitespace that only `str.strip` trims (\x1c).
SENTIMENT_TABLES = {
    "int8 labels": pa.table(
        {"id": [7, 8, 9], "sentence": [" good ", "bad", "\x1cmeh"], "label": pa.array([1, 0, 1], pa.int8())}
    ),
    "string labels": pa.table({"sentence": ["good", "bad"], "label": [" positive", "0"]}),
}
QA_TABLES = {
    "answer lists": pa.table({"question": [" who? ", "q2\x1f"], "answer": [[" x ", "y", "x", "", None], ["z"]]}),
    "answer strings": pa.table({"question": ["one", "two"], "answer": [" z ", "w"]}),
}


def write_parquet(path, columns: dict) -> str:
    pq.write_table(pa.table(columns), path)
    return str(path)


def test_records_keep_the_column_types_and_are_named_by_row_across_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(data.files, "PARQUET_ROWS_PER_BATCH", 2)  # rows 0-1, 2-3, 4: the count goes on
    path = write_parquet(tmp_path / "a.parquet", {"n": [0, 1, 2, 3, 4], "answers": [["x"], [], None, ["y"], ["z"]]})
    records = list(read_records(path))
    assert [location for location, _ in records] == [f"{path}, row {index}" for index in range(5)]
    assert [record for _, record in records][1:3] == [{"n": 1, "answers": []}, {"n": 2, "answers": None}]


@pytest.mark.parametrize("name", SENTIMENT_TABLES)
def test_sentiment_columns_of_a_parquet_file_equal_the_rows(tmp_path, monkeypatch, name):
    columnar, rows = load_both(load_sentiment_dataset, tmp_path, "a.parquet", SENTIMENT_TABLES[name], monkeypatch)
    assert columnar == rows and len(rows) >= 2


@pytest.mark.parametrize("name", QA_TABLES)
def test_qa_columns_of_a_parquet_file_equal_the_rows(tmp_path, monkeypatch, name):
    load = lambda **files: load_qa_dataset(answer_column="answer", **files)  # noqa: E731
    columnar, rows = load_both(load, tmp_path, "a.parquet", QA_TABLES[name], monkeypatch)
    assert columnar == rows and len(rows) == 2


@pytest.mark.parametrize(
    ("load", "columns", "message"),
    [
        (load_sentiment_dataset, {"sentence": ["good", None], "label": [1, 0]}, "row 1: column 'sentence' is empty"),
        (load_sentiment_dataset, {"sentence": ["a", "b", "c"], "label": [1, 0, 5]}, "row 2: label 5 is not in the"),
        (load_sentiment_dataset, {"sentence": ["good", "bad"], "label": [1, None]}, "row 1: column 'label' is empty"),
        (load_sentiment_dataset, {"sentence": ["good", "bad"], "label": [True, False]}, "row 0: label True is not"),
        (load_sentiment_dataset, {"sentence": ["good", "bad"], "label": [1.0, 0.0]}, "row 0: label 1.0 is not"),
        (load_qa_dataset, {"question": ["q", "r"], "answer": [["a"], None]}, "row 1: column 'answer' is empty"),
        (load_qa_dataset, {"question": ["q", "r"], "answer": [["a"], [" ", None]]}, "row 1: no non-empty answer"),
        (
            load_qa_dataset,
            {"question": ["q", "r"], "answer": [[1], [2]]},
            r"row 0: no non-empty answer string in \[1\]",
        ),
    ],
)
def test_a_parquet_row_the_columns_refuse_is_named_by_the_row_path(tmp_path, monkeypatch, load, columns, message):
    monkeypatch.setenv("FINETUNE_RECIPES_CACHE", str(tmp_path / "cache"))
    path = write_parquet(tmp_path / "a.parquet", columns)
    with pytest.raises(DataError, match=f"a.parquet, {message}"):
        load(train_file=path, **({"answer_column": "answer"} if load is load_qa_dataset else {}))


def test_a_file_that_is_not_parquet_or_holds_no_row_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_RECIPES_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"a\.parquet: not a readable parquet file"):
        load_sentiment_dataset(train_file=write(tmp_path / "a.parquet", "sentence\tlabel\ngood\t1\n"))
    empty = write_parquet(
        tmp_path / "b.parquet", {"sentence": pa.array([], pa.string()), "label": pa.array([], pa.int64())}
    )
    with pytest.raises(DataError, match=r"b\.parquet: no rows"):
        load_sentiment_dataset(train_file=empty)


def test_a_parquet_corpus_reads_its_text_column_a_batch_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(data.files, "PARQUET_ROWS_PER_BATCH", 4)
    lines = [f"line {index}" for index in range(9)]
    path = write_parquet(tmp_path / "c.parquet", {"id": list(range(10)), "body": [*lines, None]})
    split = text_corpus_splits(train_file=path, text_column="body")["train"]
    assert [len(batch) for batch in split.batches()] == [4, 4, 2]
    assert list(split) == [*lines, ""]  # a missing value is an empty line, as in a Hub split
    with pytest.raises(DataError, match=r"c\.parquet: missing column 'text' \(found \['body', 'id'\]\)"):
        list(text_corpus_splits(train_file=path)["train"])


def test_an_empty_prompt_of_a_parquet_prompt_file_is_named_by_row(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", {"text": ["first prompt", " "]})
    with pytest.raises(DataError, match=r"p\.parquet, row 1: empty prompt"):
        prompt_lines(text_corpus_splits(test_file=path)["test"])


def test_a_parquet_corpus_gives_the_token_stream_of_the_same_lines_in_a_text_file(tmp_path):
    lines = ["the cat sat", "", "on the mat", "the end"]
    text = text_corpus_splits(train_file=write(tmp_path / "c.txt", "\n".join(lines) + "\n"))["train"]
    table = text_corpus_splits(train_file=write_parquet(tmp_path / "c.parquet", {"text": lines}))["train"]
    tokenizer = train_tokenizer_once(text, kind="word", vocab_size=20, cache_dir=str(tmp_path / "cache"))
    streams = [
        prepare_token_streams({"train": split}, tokenizer, add_eos=True, cache_dir=str(tmp_path / "cache"))["train"]
        for split in (text, table)
    ]
    assert (
        torch.equal(streams[0], streams[1]) and streams[0].numel() == (3 + 0 + 3 + 2) + 4
    )  # the words, and an <eos> per line
    assert len(list((tmp_path / "cache").glob("train-*.npy"))) == 2  # keyed by their own files


def test_a_parquet_path_in_a_mixture_is_a_local_file(tmp_path):
    a = write_parquet(
        tmp_path / "a.parquet", {"sentence": [f"a {i}" for i in range(10)], "label": [i % 2 for i in range(10)]}
    )
    b = write(tmp_path / "b.tsv", "sentence\tlabel\n" + "".join(f"b {i}\t{i % 2}\n" for i in range(10)))
    sources = mixture_sources([{"path": a, "weight": 0.5}, {"path": b}])
    assert sources[0].is_local_file and sources[0].description == a
    mixed = load_mixture(sources, load_sentiment_dataset, seed=0)
    assert [text.split()[0] for text in mixed["text"]] == ["a"] * 5 + ["b"] * 10
