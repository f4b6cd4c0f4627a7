"""Several files per split (`train_file: [a, b]`): read in order, and a bad row still named by its own file
and line, in every loader."""

import pytest

from data.closed_book_qa import load_qa_dataset
from data.errors import DataError
from data.lm_corpus import TextSplit, prompt_lines, text_corpus_splits
from data.sentiment import load_sentiment_dataset
from tests.data.test_loaders import write


def test_a_bad_row_of_the_second_file_is_named_by_its_file_and_line(tmp_path):
    a = write(tmp_path / "a.tsv", "sentence\tlabel\nfirst\t1\nsecond\t0\n")
    b = write(tmp_path / "b.tsv", "sentence\tlabel\nthird\t1\nfourth\t9\n")
    with pytest.raises(DataError, match=r"b\.tsv, line 3: label 9 is not in the label set"):
        load_sentiment_dataset(train_file=[a, b])
    c = write(tmp_path / "c.jsonl", '{"question": "q?", "answer": "a"}\n')
    d = write(tmp_path / "d.jsonl", '{"question": "q?", "answer": "a"}\n{"question": "q2?"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl, line 2: missing column 'answer'"):
        load_qa_dataset(train_file=[c, d])


def test_text_files_of_a_split_make_one_corpus_in_order(tmp_path):
    a, b = write(tmp_path / "a.txt", "one\ntwo\n"), write(tmp_path / "b.txt", "three\n")
    splits = text_corpus_splits(train_file=[a, b], validation_file=b)
    assert list(splits["train"].lines()) == ["one", "two", "three"]
    assert splits["train"].files == (a, b) and splits["validation"].files == (b,)


def test_a_missing_text_file_of_a_list_is_named_with_its_field(tmp_path):
    a = write(tmp_path / "a.txt", "one\n")
    with pytest.raises(DataError, match=r"train_file: .*missing\.txt: no such file"):
        text_corpus_splits(train_file=[a, str(tmp_path / "missing.txt")])


def test_an_empty_prompt_is_named_by_the_line_of_its_own_file(tmp_path):
    a, b = write(tmp_path / "a.txt", "one\ntwo\n"), write(tmp_path / "b.txt", "three\n\n")
    with pytest.raises(DataError, match=r"b\.txt, line 2: empty prompt"):
        prompt_lines(TextSplit("test", files=(a, b)))
