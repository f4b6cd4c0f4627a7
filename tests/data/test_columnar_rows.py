"""The columnar reading of well-formed files (`data.columnar_rows`) gives exactly the row-by-row path's rows, and
hands every file it cannot vouch for to that path, which names the bad row."""

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import data.loading
from data.closed_book_qa import load_qa_dataset
from data.columnar_rows import read_batches
from data.errors import DataError
from data.loading import RowSource
from data.sentiment import load_sentiment_dataset
from tests.data.test_loaders import write

# Quotes inside TSV sentences, whitespace around texts and labels, names and ids, \x1c-\x1f (whitespace to
# `str.strip`, not to Arrow's own trim), CRLF line ends, a byte-order mark, an extra column before the others.
SENTIMENT_FILES = {
    "a.tsv": '\ufeffid\tsentence\tlabel\n1\t  "so" good  \t positive\n2\tbad, "really"\t0\r\n3\t\x1cmeh\x1f\t1\x1f\n',
    "b.csv": 'sentence,label\n"a ""quoted"", comma, film",1\n"two\nlines",negative\nplain,  0 \n',
    "c.jsonl": '{"sentence": "good", "label": 1}\n\n{"sentence": " bad ", "label": 0, "other": [1]}\n',
    "d.jsonl": '{"sentence": "good", "label": "positive"}\n{"sentence": "bad", "label": "0"}\n',
}
QA_FILES = {
    "a.jsonl": '{"question": " who? ", "answer": [" x ", "y", "x", "", " "]}\n'
    '{"question": "q2\\u001f", "answer": ["z"]}\n',
    "d.jsonl": '{"question": "one answer", "answer": " z "}\n{"question": "another", "answer": "w"}\n',
    "b.jsonl": '{"question": "only list", "answer": ["a", "b"]}\n{"question": "another", "answer": ["c"]}\n',
    "c.tsv": "question\tanswer\nwhat\tthat\n",
}


def refuse_rows(self: RowSource):
    """Stands in for `RowSource.records` where a test needs the columnar path: reading row by row fails it."""
    pytest.fail(f"{self.files or self.hub_name}: read row by row")


@pytest.fixture
def columnar_only(monkeypatch):
    monkeypatch.setattr(RowSource, "records", refuse_rows)


def load_both(load, tmp_path, name, content, monkeypatch):
    """`load(train_file=...)`'s training rows through the columnar path, then through the row path, of a file
    holding `content`: text, or a table (written as parquet)."""
    path = str(tmp_path / name)
    if isinstance(content, pa.Table):
        pq.write_table(content, path)
    else:
        write(tmp_path / name, content)
    monkeypatch.setenv("FINETUNE_RECIPES_CACHE", str(tmp_path / "columnar"))
    with monkeypatch.context() as patch:
        patch.setattr(RowSource, "records", refuse_rows)
        columnar = load(train_file=path)["train"].to_list()
    monkeypatch.setenv("FINETUNE_RECIPES_CACHE", str(tmp_path / "rows"))
    monkeypatch.setattr(data.loading, "read_batches", lambda paths: None)
    return columnar, load(train_file=path)["train"].to_list()


@pytest.mark.parametrize("name", SENTIMENT_FILES)
def test_sentiment_columns_equal_the_rows(tmp_path, monkeypatch, name):
    columnar, rows = load_both(load_sentiment_dataset, tmp_path, name, SENTIMENT_FILES[name], monkeypatch)
    assert columnar == rows and len(rows) >= 2


@pytest.mark.parametrize("name", QA_FILES)
def test_qa_columns_equal_the_rows(tmp_path, monkeypatch, name):
    load = lambda **files: load_qa_dataset(answer_column="answer", **files)  # noqa: E731
    columnar, rows = load_both(load, tmp_path, name, QA_FILES[name], monkeypatch)
    assert columnar == rows


def test_qa_answers_are_stripped_deduplicated_and_kept_in_order(tmp_path, monkeypatch, columnar_only):
    monkeypatch.setenv("FINETUNE_RECIPES_CACHE", str(tmp_path / "cache"))
    rows = load_qa_dataset(train_file=write(tmp_path / "a.jsonl", QA_FILES["a.jsonl"]))["train"].to_list()
    assert rows == [
        {"question": "who?", "answers": ["x", "y"], "messages": None},
        {"question": "q2", "answers": ["z"], "messages": None},
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("sentence\tlabel\ngood\t1\n\x1f \t0\n", "line 3: column 'sentence' is empty"),  # blank to str.strip only
        ("sentence\tlabel\ngood\t1\nbad\t--5\n", "line 3: label '--5' is not in the label set"),
        ("sentence\tlabel\ngood\t1\nbad\t2\n", "line 3: label 2 is not in the label set"),
        ("sentence\tlabel\ngood\t1\n\nbad\t0\n", "line 3: 0 fields, the header has 2"),
        ("sentence\tlabel\ngood\t1\nbad\t0\textra\n", "line 3: 3 fields, the header has 2"),
    ],
)
def test_a_row_the_columns_refuse_is_named_by_the_row_path(tmp_path, monkeypatch, content, message):
    monkeypatch.setenv("FINETUNE_RECIPES_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=message):
        load_sentiment_dataset(train_file=write(tmp_path / "a.tsv", content))


def test_a_byte_not_utf8_is_named_by_the_row_path(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_RECIPES_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "a.tsv"
    path.write_bytes(b"sentence\tlabel\ngood\t1\nbad \xff\t0\n")
    with pytest.raises(DataError, match="line 3, byte 26: not valid utf-8"):
        load_sentiment_dataset(train_file=str(path))


def test_qa_rows_without_an_answer_are_named_by_the_row_path(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_RECIPES_CACHE", str(tmp_path / "cache"))
    path = write(tmp_path / "a.jsonl", '{"question": "q", "answer": ["a"]}\n{"question": "r", "answer": [" ", ""]}\n')
    with pytest.raises(DataError, match="line 2: no non-empty answer string"):
        load_qa_dataset(train_file=path)


def test_a_hub_split_is_read_in_columns(tmp_path, monkeypatch, columnar_only):
    monkeypatch.setenv("FINETUNE_RECIPES_CACHE", str(tmp_path / "cache"))
    hub = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"sentence": ["a", " b "], "label": [1, 0]})})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, revision=None: hub)
    rows = load_sentiment_dataset(dataset_name="stand-in/sst2")["train"].to_list()
    assert rows == [{"text": "a", "label": 1}, {"text": " b ", "label": 0}]


def test_a_file_is_parsed_a_mebibyte_at_a_time(tmp_path):
    # The readers parse several blocks ahead and each batch's conversion copies it a few times, so the block size
    # sets the reading's peak memory (2M questions: 0.4 GB above the start with 16 MiB blocks, 0.1 GB with 1 MiB).
    line = '{"question": "%s", "answer": ["a"]}\n' % ("q" * 70)
    path = write(tmp_path / "big.jsonl", line * (3 * 2**20 // len(line)))
    batches = list(read_batches([path]))
    assert sum(map(len, batches)) == 3 * 2**20 // len(line)
    # A block ends at the end of the line it cuts: at most a line more than its 1 MiB.
    assert len(batches) >= 3 and max(len(batch) for batch in batches) * len(line) <= 2**20 + len(line)
