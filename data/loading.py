"""One way in for every task: a Hub data set name or local files -> validated `datasets.DatasetDict`.

Task modules (`sentiment`, `closed_book_qa`, `lm_corpus`) turn each raw record into a clean example
with a `convert(location, record)` function that raises `DataError` naming the location; this module
supplies the records and their locations, whether they come from local files or the Hub.
"""

import logging
from collections.abc import Callable, Iterator

import datasets

from .errors import DataError
from .files import read_records

logger = logging.getLogger(__name__)

Record = dict
#: Rows per batch where a split is read in batches (Arrow batches of a Hub split, lines to tokenise).
ROWS_PER_BATCH = 10_000
Converter = Callable[[str, Record], Record]


def split_records(
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    data_files: dict[str, str | list[str] | None] | None = None,
    encoding: str = "utf-8",
) -> dict[str, Iterator[tuple[str, Record]]]:
    """Maps each split to an iterator of `(location, record)`.

    Local files win when any are given (`{"train": "a.tsv", "validation": "b.tsv"}`), read in `encoding`;
    a split whose files hold no row (an empty file, a header only) raises `DataError` naming them. Otherwise
    `dataset_name` is loaded with `datasets.load_dataset` (Hub name or local data set folder).
    """
    data_files = {split: files for split, files in (data_files or {}).items() if files}
    if data_files:
        return {split: local_records(files, encoding=encoding) for split, files in data_files.items()}
    if not dataset_name:
        raise DataError("no data: give `dataset_name` (a Hub data set) or local files (`train_file`, ...)")
    hub = datasets.load_dataset(dataset_name, dataset_config_name)
    return {split: _hub_records(dataset_name, split, hub[split]) for split in hub}


def local_records(files: str | list[str], *, encoding: str = "utf-8") -> Iterator[tuple[str, Record]]:
    """`(location, record)` for every row of `files` in order; `DataError` naming them if they hold none."""
    paths = [files] if isinstance(files, str) else files
    empty = True
    for path in paths:
        for location, record in read_records(path, encoding=encoding):
            empty = False
            yield location, record
    if empty:
        raise no_rows_error(paths)


def no_rows_error(paths: list[str]) -> DataError:
    """The error for a split whose files hold no row."""
    return DataError(f"{', '.join(map(str, paths))}: no rows (an empty file, or a header only)")


def hub_location(name: str, split: str, index: int) -> str:
    """How a row of a Hub split is named in errors: `"stanfordnlp/sst2 [train] row 17"`."""
    return f"{name} [{split}] row {index}"


def require(record: Record, column: str, location: str) -> object:
    """`record[column]`, or a `DataError` that names the location, the column and the columns present."""
    if column not in record:
        raise DataError(f"{location}: missing column {column!r} (found {sorted(record)})")
    value = record[column]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{location}: column {column!r} is empty")
    return value


def build_dataset_dict(
    records: dict[str, Iterator[tuple[str, Record]]],
    convert: Converter,
    *,
    splits: tuple[str, ...],
    test_convert: Converter | None = None,
) -> datasets.DatasetDict:
    """Converts every record of the wanted `splits` (others are skipped, and logged) into a `DatasetDict`;
    with `test_convert`, a `test` split too, converted by it (`_test_split`: its labels are optional)."""
    converters = {split: convert for split in splits} | ({"test": test_convert} if test_convert else {})
    unused = sorted(set(records) - set(converters))
    if unused:
        logger.info("ignoring splits %s (this task uses %s)", unused, list(converters))
    result = {}
    for split, split_convert in converters.items():
        if split in records:
            if split == "test":
                result[split] = _test_split(records[split], split_convert)
            else:
                result[split] = datasets.Dataset.from_list([split_convert(loc, rec) for loc, rec in records[split]])
            logger.info("%s: %d examples", split, len(result[split]))
    if not result:
        raise DataError(f"none of the splits {list(splits)} found (have {sorted(records)})")
    return datasets.DatasetDict(result)


def _test_split(records: Iterator[tuple[str, Record]], convert: Converter) -> datasets.Dataset:
    """The test split: inputs to predict, with or without labels. A column that `convert` leaves `None` on every
    row (a file without labels) is dropped; one left `None` on some rows only fails, naming the first such row:
    dropping the labels of the whole file for one empty value would silently skip the scoring."""
    rows, first_missing, first_given = [], {}, {}
    for location, record in records:
        row = convert(location, record)
        for column, value in row.items():
            (first_missing if value is None else first_given).setdefault(column, location)
        rows.append(row)
    mixed = sorted(first_missing.keys() & first_given.keys())
    if mixed:
        column = mixed[0]
        raise DataError(
            f"{first_missing[column]}: no {column!r}, but {first_given[column]} has one; give it on every row "
            "of a test file, or on none"
        )
    return datasets.Dataset.from_list(rows).remove_columns(sorted(first_missing))


def _hub_records(name: str, split: str, dataset: datasets.Dataset) -> Iterator[tuple[str, Record]]:
    # Read in Arrow batches of columns: indexing a `Dataset` row by row decodes each row on its own, ~50x slower.
    index = 0
    for batch in dataset.iter(batch_size=ROWS_PER_BATCH):
        for values in zip(*batch.values(), strict=True):
            yield hub_location(name, split, index), dict(zip(batch, values, strict=True))
            index += 1
