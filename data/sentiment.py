"""Sentence classification data: `(text, label id)` pairs from the Hub or local csv/tsv/json files."""

import re
from collections.abc import Sequence

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from transformers import PreTrainedTokenizerBase

from .arrow_cache import tokenize_once
from .columnar_rows import any_true, is_python_blank, strip_python_whitespace
from .errors import DataError
from .loading import build_dataset_dict, require, split_sources

FEATURES = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
#: A label given as its id: what both the row path (`_label_id`) and the columnar path (`_label_ids`) read as one.
LABEL_ID = "-?[0-9]+"


def load_sentiment_dataset(
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    dataset_revision: str | None = None,
    train_file: str | list[str] | None = None,
    validation_file: str | list[str] | None = None,
    test_file: str | list[str] | None = None,
    text_column: str = "sentence",
    label_column: str = "label",
    label_names: Sequence[str] = ("negative", "positive"),
    encoding: str = "utf-8",
) -> datasets.DatasetDict:
    """Loads `train` / `validation` / `test` (those given) with columns `text` (str) and `label` (int in
    `range(len(label_names))`).

    A label may be given as its id (`1`, `"1"`) or its name (`"positive"`). A missing column, an
    empty text, or a label outside the label set raises `DataError` naming the file and line. The `test`
    split may come without labels (sentences to classify): if none of its rows has a label (no column,
    empty values, or the -1 of SST-2's hidden test labels), the split has no `label` column; a test file
    with some labels missing fails, naming the first row without one. The splits are Arrow files of the
    cache, read again only when a file or an option changes (`data.loading.build_dataset_dict`).
    """
    sources = split_sources(
        dataset_name=dataset_name,
        dataset_config_name=dataset_config_name,
        dataset_revision=dataset_revision,
        data_files={"train": train_file, "validation": validation_file, "test": test_file},
        encoding=encoding,
    )

    def convert(location: str, record: dict) -> dict:
        text = require(record, text_column, location)
        label = _label_id(require(record, label_column, location), label_names, location)
        return {"text": str(text), "label": label}

    def convert_test(location: str, record: dict) -> dict:
        text = str(require(record, text_column, location))
        value = record.get(label_column)
        if value is None or value == -1 or (isinstance(value, str) and value.strip() in ("", "-1")):
            return {"text": text, "label": None}
        return {"text": text, "label": _label_id(value, label_names, location)}

    def convert_table(table: pa.Table) -> pa.Table | None:
        if text_column not in table.column_names or label_column not in table.column_names:
            return None
        text, label_ids = table[text_column], _label_ids(table[label_column], label_names)
        if label_ids is None or not pa.types.is_string(text.type) or any_true(is_python_blank(text)):
            return None
        return pa.table({"text": text, "label": label_ids})

    return build_dataset_dict(
        sources,
        convert,
        splits=("train", "validation"),
        features=FEATURES,
        settings={"text_column": text_column, "label_column": label_column, "label_names": list(label_names)},
        test_convert=convert_test,
        convert_table=convert_table,
    )


def tokenize_sentences(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Each `text` replaced by the tokenizer's features (`input_ids`, and `token_type_ids` where the tokenizer gives
    them) of at most `max_seq_length` tokens, `label` kept; computed once per rows and tokenizer
    (`data.arrow_cache.tokenize_once`). No `attention_mask`: without padding it is all ones, and the collator
    (`DataCollatorWithPadding`) builds it with the padding; converting it here cost 8-17% of the tokenising."""

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(batch["text"], truncation=True, max_length=max_seq_length, return_attention_mask=False)

    settings = {"task": "sentiment", "max_seq_length": max_seq_length}
    return tokenize_once(
        dataset, tokenize, tokenizer=tokenizer, settings=settings, remove_columns=["text"], num_proc=num_proc
    )


def _label_id(value: object, label_names: Sequence[str], location: str) -> int:
    names = list(label_names)
    if isinstance(value, str):
        value = value.strip()
        if value in names:
            return names.index(value)
        if re.fullmatch(LABEL_ID, value):
            value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(names):
        raise DataError(
            f"{location}: label {value!r} is not in the label set (ids 0..{len(names) - 1} or names {names})"
        )
    return value


def _label_ids(labels: pa.ChunkedArray, label_names: Sequence[str]) -> pa.ChunkedArray | None:
    """`_label_id` of a column (integers, or strings holding a name or an id), or `None` if a value is not in the
    label set or not of a kind it takes: the row path then names the row."""
    if pa.types.is_integer(labels.type):
        ids = labels.cast(pa.int64())
    elif pa.types.is_string(labels.type):
        stripped = strip_python_whitespace(labels)
        by_name = pc.index_in(stripped, value_set=pa.array(list(label_names), pa.string())).cast(pa.int64())
        numeric = pc.if_else(pc.match_substring_regex(stripped, f"^{LABEL_ID}$"), stripped, None)
        ids = pc.coalesce(by_name, numeric.cast(pa.int64()))
    else:
        return None
    return None if any_true(pc.invert(pc.and_(pc.greater_equal(ids, 0), pc.less(ids, len(label_names))))) else ids
