"""Loaders: local files in every format, column mapping, and bad input named by file and line."""

import json

import pytest

from data.closed_book_qa import load_qa_dataset
from data.errors import DataError
from data.files import read_records, read_text_lines, write_jsonl
from data.lm_corpus import load_text_corpus, text_corpus_splits
from data.samples import SAMPLES_DIR
from data.sentiment import load_sentiment_dataset


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_sentiment_tsv_csv_and_jsonl_load_to_the_same_examples(tmp_path):
    tsv = write(tmp_path / "a.tsv", "sentence\tlabel\ngood film\t1\nbad film\t0\n")
    csv = write(tmp_path / "a.csv", 'sentence,label\n"good film",1\nbad film,0\n')
    jsonl = write(tmp_path / "a.jsonl", '{"sentence": "good film", "label": 1}\n{"sentence": "bad film", "label": 0}\n')
    loaded = [load_sentiment_dataset(train_file=f)["train"].to_list() for f in (tsv, csv, jsonl)]
    assert loaded[0] == loaded[1] == loaded[2] == [{"text": "good film", "label": 1}, {"text": "bad film", "label": 0}]


def test_sentiment_column_mapping_and_label_names(tmp_path):
    path = write(
        tmp_path / "a.json",
        json.dumps([{"review": "fine", "stars": "pos"}, {"review": "meh", "stars": "neg"}]),
    )
    dataset = load_sentiment_dataset(
        train_file=path, text_column="review", label_column="stars", label_names=("neg", "pos")
    )
    assert dataset["train"]["label"] == [1, 0]


def test_sentiment_samples_are_balanced_and_large_enough():
    dataset = load_sentiment_dataset(
        train_file=str(SAMPLES_DIR / "sentiment/train.tsv"),
        validation_file=str(SAMPLES_DIR / "sentiment/validation.tsv"),
    )
    assert len(dataset["train"]) + len(dataset["validation"]) >= 300
    for split in dataset.values():
        labels = split["label"]
        assert labels.count(0) == labels.count(1)
    assert not set(dataset["train"]["text"]) & set(dataset["validation"]["text"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("sentence\tlabel\ngood\t1\nbad\t7\n", r"a\.tsv, line 3: label 7 is not in the label set"),
        ("sentence\tlabel\ngood\t1\nbad\tnegative-ish\n", r"a\.tsv, line 3: label 'negative-ish'"),
        ("text\tlabel\ngood\t1\n", r"a\.tsv, line 2: missing column 'sentence'"),
        ("sentence\tlabel\ngood\t1\nbad\t0\textra\n", r"a\.tsv, line 3: 3 fields, the header has 2"),
        ("sentence\tlabel\n \t1\n", r"a\.tsv, line 2: column 'sentence' is empty"),
    ],
)
def test_bad_sentiment_rows_name_file_and_line(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        load_sentiment_dataset(train_file=write(tmp_path / "a.tsv", content))


def test_malformed_json_line_is_named(tmp_path):
    path = write(tmp_path / "qa.jsonl", '{"question": "q", "answer": ["a"]}\n{"question": "q2", "answer": \n')
    with pytest.raises(DataError, match=r"qa\.jsonl, line 2: not valid JSON"):
        load_qa_dataset(train_file=path)


def test_missing_file_and_unknown_extension_are_named(tmp_path):
    with pytest.raises(DataError, match=r"nope\.tsv: no such file"):
        load_sentiment_dataset(train_file=str(tmp_path / "nope.tsv"))
    with pytest.raises(DataError, match=r"unsupported extension '\.xlsx'"):
        list(read_records(write(tmp_path / "a.xlsx", "x")))


def test_no_data_source_is_an_error():
    with pytest.raises(DataError, match="no data"):
        load_sentiment_dataset()


def test_qa_layouts_nq_open_triviaqa_and_webquestions_normalise_to_answer_lists(tmp_path):
    nq = write(tmp_path / "nq.jsonl", '{"question": "who", "answer": ["Ann", "Anne"]}\n')
    trivia = write(
        tmp_path / "tqa.jsonl",
        '{"question": "who", "answer": {"value": "Ann", "aliases": ["Ann", "Anne"]}}\n',
    )
    webq = write(tmp_path / "wq.json", '[{"qId": "1", "qText": "who?", "answers": ["Ann", "Anne"]}]')
    nq_row = load_qa_dataset(train_file=nq)["train"][0]
    assert nq_row == {"question": "who", "answers": ["Ann", "Anne"], "messages": None}
    assert load_qa_dataset(train_file=trivia)["train"][0]["answers"] == ["Ann", "Anne"]
    webq_row = load_qa_dataset(train_file=webq, question_column="qText", answer_column="answers")["train"][0]
    assert webq_row == {"question": "who?", "answers": ["Ann", "Anne"], "messages": None}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('{"question": "q", "answer": []}', "line 1: no non-empty answer"),
        ('{"question": "q", "answer": 3}', "line 1: answer must be a string or a list of strings"),
        ('{"question": "q"}', "line 1: missing column 'answer'"),
    ],
)
def test_bad_qa_rows_name_file_and_line(tmp_path, row, message):
    with pytest.raises(DataError, match=message):
        load_qa_dataset(train_file=write(tmp_path / "qa.jsonl", row + "\n"))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("t.tsv", "sentence\tlabel\ngood\t1\nbad\t\nfine\t\n", r"t\.tsv, line 3: no 'label', but .*t\.tsv, line 2 has"),
        ("t.tsv", "sentence\tlabel\ngood\t-1\nbad\t0\n", r"t\.tsv, line 2: no 'label', but .*t\.tsv, line 3 has"),
        ("t.jsonl", '{"question": "q1", "answer": "a"}\n{"question": "q2"}\n', r"t\.jsonl, line 2: no 'answers'"),
    ],
)
def test_a_test_file_with_some_labels_or_answers_missing_names_the_first_row_without(tmp_path, name, content, message):
    load = load_sentiment_dataset if name.endswith(".tsv") else load_qa_dataset
    with pytest.raises(DataError, match=message):
        load(test_file=write(tmp_path / name, content))


def test_a_test_file_without_any_label_or_answer_loads_without_that_column(tmp_path):
    sentences = load_sentiment_dataset(test_file=write(tmp_path / "t.tsv", "sentence\tlabel\ngood\t\nbad\t-1\n"))
    assert sentences["test"].column_names == ["text"] and sentences["test"]["text"] == ["good", "bad"]
    questions = load_qa_dataset(test_file=write(tmp_path / "t.jsonl", '{"question": "q1"}\n{"question": "q2"}\n'))
    assert questions["test"].column_names == ["question"]
    labelled = load_sentiment_dataset(test_file=write(tmp_path / "l.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n"))
    assert labelled["test"]["label"] == [1, 0]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("v.tsv", "sentence\tlabel\ngood\t1\nbad\t\n", r"v\.tsv, line 3: column 'label' is empty"),
        ("v.jsonl", '{"question": "q1", "answer": "a"}\n{"question": "q2", "answer": ""}\n', r"v\.jsonl, line 2"),
    ],
)
def test_a_validation_file_with_an_empty_label_or_answer_names_it(tmp_path, name, content, message):
    load = load_sentiment_dataset if name.endswith(".tsv") else load_qa_dataset
    with pytest.raises(DataError, match=message):
        load(validation_file=write(tmp_path / name, content))


def test_qa_samples_have_200_pairs_in_nq_open_form():
    dataset = load_qa_dataset(
        train_file=str(SAMPLES_DIR / "closed_book_qa/train.jsonl"),
        validation_file=str(SAMPLES_DIR / "closed_book_qa/validation.jsonl"),
    )
    assert len(dataset["train"]) + len(dataset["validation"]) >= 200
    assert all(answers for answers in dataset["train"]["answers"])


def test_text_corpus_keeps_every_line_in_order_including_empty_ones(tmp_path):
    path = write(tmp_path / "c.txt", "first line\n\nthird line\n")
    assert load_text_corpus(train_file=path)["train"]["text"] == ["first line", "", "third line"]


def test_relative_sample_paths_resolve_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dataset = load_sentiment_dataset(train_file="data/samples/sentiment/train.tsv")
    assert len(dataset["train"]) > 0


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"\xef\xbb\xbfsentence,label\ngood film,1\n")  # as spreadsheets export UTF-8
    assert load_sentiment_dataset(train_file=str(path))["train"].to_list() == [{"text": "good film", "label": 1}]


def test_a_byte_invalid_in_the_encoding_is_named_and_the_encoding_option_reads_it(tmp_path):
    path = tmp_path / "rt-polarity.tsv"
    path.write_bytes("sentence\tlabel\ngood\t1\nun film plutôt réussi\t1\n".encode("latin-1"))  # MR is latin-1
    with pytest.raises(DataError, match=r"rt-polarity\.tsv, line 3, byte 34: not valid utf-8"):
        load_sentiment_dataset(train_file=str(path))
    loaded = load_sentiment_dataset(train_file=str(path), encoding="latin-1")
    assert loaded["train"]["text"] == ["good", "un film plutôt réussi"]


def test_a_split_with_only_a_header_is_named(tmp_path):
    train = write(tmp_path / "train.tsv", "sentence\tlabel\ngood\t1\n")
    validation = write(tmp_path / "validation.tsv", "sentence\tlabel\n")
    with pytest.raises(DataError, match=r"validation\.tsv: no rows \(an empty file, or a header only\)"):
        load_sentiment_dataset(train_file=train, validation_file=validation)
    with pytest.raises(DataError, match=r"empty\.txt: no rows"):
        list(text_corpus_splits(train_file=write(tmp_path / "empty.txt", ""))["train"])


def test_hub_text_splits_read_in_column_batches_with_located_errors(tmp_path):
    folder = tmp_path / "hub_like"
    folder.mkdir()
    rows = [{"text": f"line {i}", "id": i} for i in range(25_000)] + [{"text": None, "id": -1}]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    train = text_corpus_splits(dataset_name=str(folder))["train"]
    assert [len(batch) for batch in train.batches()] == [10_000, 10_000, 5_001]
    assert list(train) == [f"line {i}" for i in range(25_000)] + [""]  # a missing value is an empty line
    with pytest.raises(
        DataError, match=r"hub_like \[train\] row 0: missing column 'sentence' \(found \['id', 'text'\]\)"
    ):
        list(text_corpus_splits(dataset_name=str(folder), text_column="sentence")["train"])


def test_text_lines_in_batches_equal_the_txt_records_and_name_a_bad_byte(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"\xef\xbb\xbffirst\r\n\r\n third \nlast")  # byte-order mark, CRLF, empty line, no final newline
    batches = list(read_text_lines(path, lines_per_batch=3))
    assert batches == [["first", "", " third "], ["last"]]
    assert sum(batches, []) == [record["text"] for _, record in read_records(path)]
    path.write_bytes("ok\nnaïve\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"c\.txt, line 2, byte 5: not valid utf-8"):
        list(read_text_lines(path))


def test_written_jsonl_reads_back_row_by_row_unescaped_and_replaces_the_file(tmp_path):
    path = tmp_path / "new" / "rows.jsonl"  # the folder does not exist yet
    write_jsonl(path, [{"prompt": "old"}] * 3)
    rows = [{"prompt": "naïve café", "continuation": "a\nb"}, {"prompt": "", "continuation": "c"}]
    write_jsonl(path, rows)
    assert list(read_records(path)) == [(f"{path}, line {n}", row) for n, row in enumerate(rows, start=1)]
    assert "naïve café" in path.read_text(encoding="utf-8")  # readable, not \u-escaped
