"""One way in for every task: a Hub data set name or local files -> validated `datasets.DatasetDict`.

Task modules (`sentiment`, `closed_book_qa`, `lm_corpus`) turn each raw record into a clean example
with a `convert(location, record)` function that raises `DataError` naming the location; this module
supplies the records and their locations, whether they come from local files or the Hub, and writes the
examples into Arrow files cached between runs (`data.arrow_cache`); `RowTexts` reads texts back from them
a batch of rows at a time (a tokenizer's training texts).
"""

import codecs
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import datasets
import pyarrow as pa

from .arrow_cache import cached_rows
from .columnar_rows import TableConverter, read_batches
from .errors import DataError
from .files import existing_file, file_identity, read_records

logger = logging.getLogger(__name__)

Record = dict
#: Rows per batch where a split is read in batches (Arrow batches of a Hub split, lines to tokenise).
ROWS_PER_BATCH = 10_000
Converter = Callable[[str, Record], Record]


@dataclass(frozen=True)
class RowSource:
    """Where one split's records come from: local `files` read in `encoding`, or a Hub split (`hub_dataset`,
    Arrow files that `datasets` memory-maps) of the data set `hub_name`."""

    split: str
    files: tuple[str, ...] = ()
    hub_dataset: datasets.Dataset | None = None
    hub_name: str = ""
    encoding: str = "utf-8"

    def records(self) -> Iterator[tuple[str, Record]]:
        """`(location, record)` for every row, in order."""
        if self.hub_dataset is not None:
            return _hub_records(self.hub_name, self.split, self.hub_dataset)
        return local_records(list(self.files), encoding=self.encoding)

    def converted_tables(self, convert: TableConverter) -> Iterator[pa.Table | None] | None:
        """The rows converted a batch at a time by `convert` (`data.columnar_rows`), or `None` where no columnar
        reader applies (a file format without one, an encoding other than UTF-8)."""
        if self.hub_dataset is not None:
            return map(convert, self.hub_dataset.with_format("arrow").iter(batch_size=ROWS_PER_BATCH))
        if codecs.lookup(self.encoding).name != "utf-8":
            return None
        batches = read_batches(list(self.files))
        return None if batches is None else map(convert, batches)

    def identity(self) -> list:
        """What the records depend on, for cache keys: the files' path, size and mtime (`DataError` naming a missing
        one), or the Arrow files and `datasets`' fingerprint of the Hub split (the files' path holds the data set's
        revision; the fingerprint tells apart splits held in memory), and the encoding."""
        if self.hub_dataset is not None:
            hub_files = [cache["filename"] for cache in self.hub_dataset.cache_files]
            return [self.hub_name, self.split, file_identity(hub_files), self.hub_dataset._fingerprint]
        return [file_identity(map(existing_file, self.files)), self.encoding]


class RowTexts:
    """Texts made from a data set's rows (`make(*values of columns)`, default the one column's value), read a
    batch of rows at a time and made afresh on every iteration: what `train_tokenizer_once` reads twice (key,
    then training). Batches, because iterating `rows[column]` formats one row at a time, about 100x slower
    (500k rows: 27 s against 0.1 s here); never a list, which costs gigabytes at millions of rows."""

    def __init__(self, rows: datasets.Dataset, columns: list[str], make: Callable[..., str] = str) -> None:
        self.rows, self.columns, self.make = rows, columns, make

    def __iter__(self) -> Iterator[str]:
        for batch in self.rows.select_columns(self.columns).iter(batch_size=10_000):
            yield from map(self.make, *(batch[column] for column in self.columns))


def split_sources(
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    data_files: dict[str, str | list[str] | None] | None = None,
    encoding: str = "utf-8",
    dataset_revision: str | None = None,
) -> dict[str, RowSource]:
    """Maps each split to the source of its records.

    Local files win when any are given (`{"train": "a.tsv", "validation": "b.tsv"}`), read in `encoding`;
    a split whose files hold no row (an empty file, a header only) raises `DataError` naming them. Otherwise
    `dataset_name` is loaded with `datasets.load_dataset` (Hub name or local data set folder) at
    `dataset_revision` (a branch, tag or commit; None: the default branch).
    """
    data_files = {split: files for split, files in (data_files or {}).items() if files}
    if data_files:
        return {
            split: RowSource(split, files=(files,) if isinstance(files, str) else tuple(files), encoding=encoding)
            for split, files in data_files.items()
        }
    if not dataset_name:
        raise DataError("no data: give `dataset_name` (a Hub data set) or local files (`train_file`, ...)")
    hub = datasets.load_dataset(dataset_name, dataset_config_name, revision=dataset_revision)
    return {split: RowSource(split, hub_dataset=hub[split], hub_name=dataset_name) for split in hub}


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
    sources: dict[str, RowSource],
    convert: Converter,
    *,
    splits: tuple[str, ...],
    features: datasets.Features,
    settings: dict,
    test_convert: Converter | None = None,
    convert_table: TableConverter | None = None,
) -> datasets.DatasetDict:
    """Converts every record of the wanted `splits` (others are skipped, and logged) into a `DatasetDict` of
    `features`; with `test_convert`, a `test` split too, converted by it (`_test_split`: its labels are optional).
    `convert_table`, the columnar form of `convert` (`data.columnar_rows`), is tried first on those `splits`.

    Each split is an Arrow file of the cache (`data.arrow_cache.cached_rows`), keyed by its source's identity and
    `settings`, which must hold every option the converters read (columns, label names)."""
    converters = {split: convert for split in splits} | ({"test": test_convert} if test_convert else {})
    unused = sorted(set(sources) - set(converters))
    if unused:
        logger.info("ignoring splits %s (this task uses %s)", unused, list(converters))
    result = {}
    for split, split_convert in converters.items():
        if split in sources:
            source = sources[split]
            rows = cached_rows(
                split,
                lambda source=source, split_convert=split_convert: (
                    split_convert(location, record) for location, record in source.records()
                ),
                features=features,
                key=[source.identity(), split == "test", settings],
                tables=partial(source.converted_tables, convert_table) if convert_table and split != "test" else None,
            )
            result[split] = _test_split(rows, source, split_convert) if split == "test" else rows
            logger.info("%s: %d examples", split, len(result[split]))
    if not result:
        raise DataError(f"none of the splits {list(splits)} found (have {sorted(sources)})")
    return datasets.DatasetDict(result)


def _test_split(rows: datasets.Dataset, source: RowSource, convert: Converter) -> datasets.Dataset:
    """The test split: inputs to predict, with or without labels. A column that `convert` leaves `None` on every
    row (a file without labels) is dropped; one left `None` on some rows only fails, naming the first such row:
    dropping the labels of the whole file for one empty value would silently skip the scoring."""
    nulls = {column: rows.data.column(column).null_count for column in rows.column_names}
    mixed = sorted(column for column, count in nulls.items() if 0 < count < len(rows))
    if mixed:
        raise _mixed_column_error(mixed[0], source, convert)
    return rows.remove_columns(sorted(column for column, count in nulls.items() if 0 < count == len(rows)))


def _mixed_column_error(column: str, source: RowSource, convert: Converter) -> DataError:
    """The error for a test `column` given on some rows only, naming the first row without it and the first with
    it: the records are read again, which costs nothing on the good files that never get here."""
    first = {}
    for location, record in source.records():
        first.setdefault(convert(location, record)[column] is None, location)
        if len(first) == 2:
            break
    return DataError(
        f"{first[True]}: no {column!r}, but {first[False]} has one; give it on every row of a test file, or on none"
    )


def _hub_records(name: str, split: str, dataset: datasets.Dataset) -> Iterator[tuple[str, Record]]:
    # Read in Arrow batches of columns: indexing a `Dataset` row by row decodes each row on its own, ~50x slower.
    index = 0
    for batch in dataset.iter(batch_size=ROWS_PER_BATCH):
        for values in zip(*batch.values(), strict=True):
            yield hub_location(name, split, index), dict(zip(batch, values, strict=True))
            index += 1
