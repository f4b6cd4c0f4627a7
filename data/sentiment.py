"""Text classification data: a text (or a pair of texts) and its label, from the Hub or local csv/tsv/json files.

The label is read as its problem type asks (`data.class_labels`): a class id, a multi-hot vector, or a score.
"""

from collections.abc import Sequence

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from transformers import PreTrainedTokenizerBase

from .arrow_cache import tokenize_once
from .class_labels import LABEL_ID, is_unlabelled, label_feature, label_parser
from .columnar_rows import any_true, is_python_blank, strip_python_whitespace
from .loading import Record, build_dataset_dict, require, split_sources
from .splits import validation_split_names


def load_sentiment_dataset(
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    dataset_revision: str | None = None,
    train_file: str | list[str] | None = None,
    validation_file: str | list[str] | None = None,
    test_file: str | list[str] | None = None,
    text_column: str = "sentence",
    text_pair_column: str | None = None,
    label_column: str = "label",
    label_names: Sequence[str] = ("negative", "positive"),
    problem_type: str = "single_label_classification",
    label_separator: str = ",",
    encoding: str = "utf-8",
) -> datasets.DatasetDict:
    """Loads `train`, the validation split(s) and `test` (those given) with columns `text` (str), `text_pair` (str,
    with `text_pair_column`) and `label` (`data.class_labels`: for the default `problem_type`, an int in
    `range(len(label_names))`, given as its id (`1`, `"1"`) or its name (`"positive"`); a multi-hot vector for
    `multi_label_classification`, the names joined by `label_separator` in a string; a float for `regression`).

    The validation splits: `validation`, else (a Hub data set such as MNLI) every `validation_<name>` split
    (`data.splits.validation_split_names`). A missing column, an empty text (either of a pair), or a label that
    does not fit raises `DataError` naming the file and line. The `test` split may come without labels (texts to
    classify): if none of its rows has a label (no column, empty values, or the -1 of GLUE's hidden test labels,
    except in regression), the split has no `label` column; a test file with some labels missing fails, naming the
    first row without one. The splits are Arrow files of the cache, read again only when a file or an option
    changes (`data.loading.build_dataset_dict`).
    """
    sources = split_sources(
        dataset_name=dataset_name,
        dataset_config_name=dataset_config_name,
        dataset_revision=dataset_revision,
        data_files={"train": train_file, "validation": validation_file, "test": test_file},
        encoding=encoding,
    )
    parse_label = label_parser(problem_type, label_names, label_separator)
    text_columns = {"text": text_column} | ({"text_pair": text_pair_column} if text_pair_column else {})

    def texts(location: str, record: Record) -> dict:
        return {name: str(require(record, column, location)) for name, column in text_columns.items()}

    def convert(location: str, record: Record) -> dict:
        return texts(location, record) | {"label": parse_label(require(record, label_column, location), location)}

    def convert_test(location: str, record: Record) -> dict:
        value = record.get(label_column)
        return texts(location, record) | {
            "label": None if is_unlabelled(value, problem_type) else parse_label(value, location)
        }

    def convert_table(table: pa.Table) -> pa.Table | None:
        columns = [*text_columns.values(), label_column]
        if problem_type != "single_label_classification" or not set(columns) <= set(table.column_names):
            return None  # the other problem types: the row path only
        label_ids = _label_ids(table[label_column], label_names)
        if label_ids is None or not all(_non_blank_strings(table[column]) for column in text_columns.values()):
            return None
        return pa.table({name: table[column] for name, column in text_columns.items()} | {"label": label_ids})

    features = {name: datasets.Value("string") for name in text_columns}
    settings = {"text_columns": text_columns, "label_column": label_column, "label_names": list(label_names)}
    return build_dataset_dict(
        sources,
        convert,
        splits=("train", *validation_split_names(sources)),
        features=datasets.Features(features | {"label": label_feature(problem_type, len(label_names))}),
        settings=settings | {"problem_type": problem_type, "label_separator": label_separator},
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
    """Each `text` (with its `text_pair`, where the rows have one: the tokenizer's pair encoding, the longer text
    truncated first) replaced by the tokenizer's features (`input_ids`, and `token_type_ids` where the tokenizer
    gives them) of at most `max_seq_length` tokens, `label` kept; computed once per rows and tokenizer
    (`data.arrow_cache.tokenize_once`). No `attention_mask`: without padding it is all ones, and the collator
    (`DataCollatorWithPadding`) builds it with the padding; converting it here cost 8-17% of the tokenising."""
    texts = text_columns(dataset)

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        columns = [batch[column] for column in texts]
        return tokenizer(*columns, truncation="longest_first", max_length=max_seq_length, return_attention_mask=False)

    settings = {"task": "sentiment", "max_seq_length": max_seq_length}
    return tokenize_once(
        dataset, tokenize, tokenizer=tokenizer, settings=settings, remove_columns=texts, num_proc=num_proc
    )


def text_columns(rows: datasets.Dataset) -> list[str]:
    """The text columns of rows that `load_sentiment_dataset` loaded: `text`, and `text_pair` where they are pairs."""
    return [column for column in ("text", "text_pair") if column in rows.column_names]


def _label_ids(labels: pa.ChunkedArray, label_names: Sequence[str]) -> pa.ChunkedArray | None:
    """`data.class_labels.label_id` of a column (integers, or strings holding a name or an id), or `None` if a value
    is not in the label set or not of a kind it takes: the row path then names the row."""
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


def _non_blank_strings(texts: pa.ChunkedArray) -> bool:
    """Whether every value of `texts` is a string with a character other than whitespace (as `require` asks)."""
    return pa.types.is_string(texts.type) and not any_true(is_python_blank(texts))
