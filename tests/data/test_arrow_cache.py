"""The Arrow cache of sentiment and QA data: rows read once per file version, tokenised once per tokenizer, bad
rows still named by file and line."""

import gc
import logging
import os

import pyarrow as pa
import pytest
import torch
from transformers import DataCollatorWithPadding

import data.loading
from data.arrow_cache import ROWS_PER_WRITE, tokenize_once
from data.closed_book_qa import load_qa_dataset
from data.errors import DataError
from data.qa_features import DEFAULT_PROMPT_TEMPLATE, TemplatePrompts, tokenize_qa_dataset
from data.sentiment import load_sentiment_dataset, tokenize_sentences
from data.tokenizers import train_tokenizer

WORDS = ["good", "bad", "film", "plot", "dull", "fine", "great", "story"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Every test starts from an empty cache of its own."""
    monkeypatch.setenv("FINETUNE_RECIPES_CACHE", str(tmp_path / "cache"))


def write_sentences(path, count, *, start=0):
    lines = [
        f"{WORDS[i % 8]} {WORDS[i * 3 % 8]} {WORDS[i * 5 % 7]} {i}\t{i % 2}\n" for i in range(start, start + count)
    ]
    path.write_text("sentence\tlabel\n" + "".join(lines), encoding="utf-8")
    return str(path)


def forbid_reading(monkeypatch):
    """Makes any read of the source records fail: what loads afterwards came from the cache."""

    def read(self, *convert):
        raise AssertionError(f"{self.files or self.hub_name} read again")

    monkeypatch.setattr(data.loading.RowSource, "records", read)  # row by row
    monkeypatch.setattr(data.loading.RowSource, "converted_tables", read)  # a batch of columns at a time


@pytest.fixture(scope="module")
def tokenizer():
    texts = [f"{a} {b} {i}" for i in range(50) for a in WORDS for b in WORDS[:3]]
    return train_tokenizer(texts, kind="wordpiece", vocab_size=120)


@pytest.fixture(scope="module")
def qa_tokenizer():
    texts = [DEFAULT_PROMPT_TEMPLATE.format(question=f"what is {w} {i}") + f" {w}" for i in range(20) for w in WORDS]
    return train_tokenizer(texts, kind="bpe", vocab_size=300)  # with an EOS token, which every answer ends with


def test_a_bad_row_after_the_first_written_batch_names_file_and_line_and_leaves_no_cache(tmp_path):
    path = tmp_path / "big.tsv"
    write_sentences(path, ROWS_PER_WRITE + 10)
    with path.open("a", encoding="utf-8") as f:
        f.write("late row\t7\n")  # line 1 (header) + ROWS_PER_WRITE + 10 rows + this one
    with pytest.raises(DataError, match=rf"big\.tsv, line {ROWS_PER_WRITE + 12}: label 7 is not in the label set"):
        load_sentiment_dataset(train_file=str(path))
    cache = tmp_path / "cache" / "datasets"
    assert not list(cache.iterdir())  # neither a finished file nor a temporary one


def test_an_unchanged_file_is_reused_from_the_cache(tmp_path, monkeypatch):
    path = write_sentences(tmp_path / "train.tsv", 30)
    first = load_sentiment_dataset(train_file=path)["train"]
    forbid_reading(monkeypatch)
    again = load_sentiment_dataset(train_file=path)["train"]
    assert again.cache_files == first.cache_files and again.to_list() == first.to_list()
    with pytest.raises(AssertionError, match="read again"):  # another option: another key, read again
        load_sentiment_dataset(train_file=path, label_names=("neg", "pos"))


def test_an_edited_file_is_read_again(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\ngood film\t1\n", encoding="utf-8")
    stat = path.stat()
    assert load_sentiment_dataset(train_file=str(path))["train"].to_list() == [{"text": "good film", "label": 1}]
    path.write_text("sentence\tlabel\ndull film\t0\n", encoding="utf-8")  # the same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a later mtime, even within one clock tick
    assert load_sentiment_dataset(train_file=str(path))["train"].to_list() == [{"text": "dull film", "label": 0}]


def test_a_hub_split_is_keyed_by_its_arrow_files_and_reused(tmp_path, monkeypatch):
    folder = tmp_path / "hub_like"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"sentence": "good film", "label": 1}\n{"sentence": "bad", "label": 0}\n')
    first = load_sentiment_dataset(dataset_name=str(folder))["train"]
    forbid_reading(monkeypatch)
    again = load_sentiment_dataset(dataset_name=str(folder))["train"]
    assert again.cache_files == first.cache_files and again["label"] == [1, 0]


def test_a_cache_file_cut_short_is_written_again_with_a_warning(tmp_path, caplog):
    path = write_sentences(tmp_path / "train.tsv", 30)
    first = load_sentiment_dataset(train_file=path)["train"]
    cached, rows = first.cache_files[0]["filename"], first.to_list()
    with open(cached, "r+b") as f:
        f.truncate(os.path.getsize(cached) // 2)  # as a full disk or a killed copy leaves it
    with caplog.at_level(logging.WARNING, logger="data.arrow_cache"):
        again = load_sentiment_dataset(train_file=path)["train"]
    assert "unreadable" in caplog.text and again.to_list() == rows


def test_qa_rows_and_a_test_split_without_answers_come_back_from_the_cache_unchanged(tmp_path, monkeypatch):
    train = tmp_path / "train.jsonl"
    train.write_text('{"question": "who", "answer": ["Ann", "Anne"]}\n{"question": "where", "answer": "here"}\n')
    test = tmp_path / "test.jsonl"
    test.write_text('{"question": "q1"}\n{"question": "q2"}\n')
    first = load_qa_dataset(train_file=str(train), test_file=str(test))
    forbid_reading(monkeypatch)
    again = load_qa_dataset(train_file=str(train), test_file=str(test))
    assert again["train"].to_list() == [
        {"question": "who", "answers": ["Ann", "Anne"], "messages": None},
        {"question": "where", "answers": ["here"], "messages": None},
    ]
    assert again["test"].column_names == ["question"] and again["test"].to_list() == first["test"].to_list()


def test_a_repeat_tokenisation_loads_the_cache_without_calling_the_tokenizer(tmp_path, tokenizer, monkeypatch, caplog):
    rows = load_sentiment_dataset(train_file=write_sentences(tmp_path / "train.tsv", 40))["train"]
    first = tokenize_sentences(rows, tokenizer, max_seq_length=4)
    calls = []
    encode = type(tokenizer).__call__
    monkeypatch.setattr(type(tokenizer), "__call__", lambda self, *a, **k: calls.append(1) or encode(self, *a, **k))
    with caplog.at_level(logging.INFO, logger="datasets"):
        again = tokenize_sentences(rows, tokenizer, max_seq_length=4)
    assert not calls and again.cache_files == first.cache_files and again.to_list() == first.to_list()
    assert "Loading cached processed dataset" in caplog.text
    assert first.column_names == ["label", "input_ids"]  # the collator builds the attention mask
    assert max(map(len, first["input_ids"])) == 4
    longer = tokenize_sentences(rows, tokenizer, max_seq_length=6)  # another setting: tokenised again
    assert calls and max(map(len, longer["input_ids"])) == 6


def test_tokenising_leaves_the_saved_tokenizer_as_it_was(tmp_path, tokenizer):
    # A call with truncation=True leaves it set on the Rust tokenizer, and tokenizer.json saves it: a run that
    # tokenised saved another file than the same run loading its features from the cache.
    rows = load_sentiment_dataset(train_file=write_sentences(tmp_path / "train.tsv", 40))["train"]
    before = tokenizer.backend_tokenizer.to_str()
    tokenize_sentences(rows, tokenizer, max_seq_length=4)
    assert tokenizer.backend_tokenizer.to_str() == before
    own = train_tokenizer(WORDS * 10, kind="wordpiece", vocab_size=60)
    own.backend_tokenizer.enable_truncation(max_length=7)  # a tokenizer's own setting is kept
    own.backend_tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=7)
    before = own.backend_tokenizer.to_str()
    tokenize_sentences(rows, own, max_seq_length=4)
    assert own.backend_tokenizer.to_str() == before


def test_the_collated_batch_is_the_one_the_tokenizer_pads(tmp_path, tokenizer):
    lines = "".join(f"{' '.join(WORDS[: 1 + i])}\t{i % 2}\n" for i in range(8))  # 1 to 8 words
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + lines, encoding="utf-8")
    rows = load_sentiment_dataset(train_file=str(tmp_path / "train.tsv"))["train"]
    features = tokenize_sentences(rows, tokenizer, max_seq_length=6).remove_columns("label")
    batch = DataCollatorWithPadding(tokenizer)(features.to_list())
    padded = tokenizer(list(rows["text"]), truncation=True, max_length=6, padding=True, return_tensors="pt")
    assert batch.keys() == padded.keys() and 0 in batch["attention_mask"]  # some rows really are padded
    assert all(torch.equal(batch[name], padded[name]) for name in padded)


def test_another_tokenizer_or_other_rows_are_tokenised_again(tmp_path, tokenizer):
    rows = load_sentiment_dataset(train_file=write_sentences(tmp_path / "train.tsv", 40))["train"]
    first = tokenize_sentences(rows, tokenizer, max_seq_length=8)
    other = train_tokenizer([f"{w} {w}" for w in WORDS] * 20, kind="wordpiece", vocab_size=60)
    assert tokenize_sentences(rows, other, max_seq_length=8).cache_files != first.cache_files
    assert tokenize_sentences(rows.select(range(10)), tokenizer, max_seq_length=8).to_list() == first.to_list()[:10]


@pytest.mark.slow
def test_two_workers_give_the_same_tokenised_data_as_one(tmp_path, tokenizer, qa_tokenizer, monkeypatch):
    train = write_sentences(tmp_path / "train.tsv", 200)
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        "".join(f'{{"question": "what is {w} {i}", "answer": ["{w}", "x{i}"]}}\n' for i, w in enumerate(WORDS * 5))
    )
    results = {}
    for workers in (1, 2):
        monkeypatch.setenv("FINETUNE_RECIPES_CACHE", str(tmp_path / f"cache{workers}"))  # computed, not loaded
        sentences = tokenize_sentences(
            load_sentiment_dataset(train_file=train)["train"], tokenizer, max_seq_length=8, num_proc=workers
        )
        questions = tokenize_qa_dataset(
            load_qa_dataset(train_file=str(qa))["train"],
            TemplatePrompts(qa_tokenizer, DEFAULT_PROMPT_TEMPLATE),
            max_seq_length=16,
            all_answers=True,
            num_proc=workers,
        )
        assert len(sentences.cache_files) == len(questions.cache_files) == workers  # one file per worker
        results[workers] = (sentences.to_list(), questions.to_list())
    assert results[1] == results[2]
    assert len(results[1][1]) == 80  # one example per gold answer
    assert all(row["labels"][-1] == qa_tokenizer.eos_token_id for row in results[1][1])


def test_tokenised_features_are_written_a_rows_per_write_batch_at_a_time(tmp_path, tokenizer):
    # Opening a memory-mapped Arrow file reads every record batch's header, and each read maps the 64 KiB around
    # it: `map`'s default of 1,000 rows a batch cost 0.13 GB of resident memory at 2M questions.
    rows = load_sentiment_dataset(train_file=write_sentences(tmp_path / "train.tsv", ROWS_PER_WRITE + 10))["train"]
    features = tokenize_sentences(rows, tokenizer, max_seq_length=4)
    [cache_file] = features.cache_files
    with pa.memory_map(cache_file["filename"]) as source:
        batches = pa.ipc.open_stream(source).read_all().to_batches()
    assert [len(batch) for batch in batches] == [ROWS_PER_WRITE, 10]


def test_tokenising_runs_with_the_objects_alive_before_out_of_the_collectors_sight(tmp_path):
    # Every full collection would otherwise walk all the objects the imports made: at 200k questions about 15% of
    # the tokenising CPU time.
    rows = load_sentiment_dataset(train_file=write_sentences(tmp_path / "train.tsv", 20))["train"]
    seen = []

    def tokenize(batch):
        seen.append(gc.get_freeze_count())
        return {"n": [len(text) for text in batch["text"]]}

    assert gc.get_freeze_count() == 0
    tokenize_once(
        rows,
        tokenize,
        tokenizer=train_tokenizer(WORDS * 5, kind="wordpiece", vocab_size=60),
        settings={},
        remove_columns=rows.column_names,
    )
    assert seen and min(seen) > 0  # frozen while tokenising
    assert gc.get_freeze_count() == 0  # and given back to the collector after
