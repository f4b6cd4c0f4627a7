"""Raw text for language modelling: one record per line, from the Hub (WikiText) or local files (a parquet file:
its `text_column`, one line per row).

A corpus is read split by split, a batch of lines at a time (`TextSplit.batches`), and never held whole:
WikiText-103 is 540 MB of text in 1.8M lines, and a Python list of them (or a `datasets.Dataset` built
from one) costs gigabytes in every process. Empty lines are kept (they are paragraph breaks in WikiText);
order matters because models trained on ordered streams (Transformer-XL) read the corpus as one sequence.
"""

import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa
from tqdm.auto import tqdm

from .errors import DataError
from .files import parquet_batches, read_records, read_text_lines, resolve_path
from .loading import ROWS_PER_BATCH, hub_location, no_rows_error


@dataclass(frozen=True)
class TextSplit:
    """One split of a text corpus: local files read in `encoding`, or a Hub split (Arrow files that `datasets`
    memory-maps), whose `text_column` holds one line per row (a missing value reads as an empty line)."""

    name: str
    files: tuple[str, ...] = ()
    hub_dataset: datasets.Dataset | None = None
    hub_name: str = ""
    text_column: str = "text"
    encoding: str = "utf-8"
    show_progress: bool = False

    @property
    def description(self) -> str:
        return f"{self.hub_name} [{self.name}]" if self.hub_dataset is not None else ", ".join(self.files)

    def source_files(self) -> list[Path]:
        """The files this split's text comes from: the local files, or the Arrow files of a Hub split (their path
        holds the data set's revision hash)."""
        if self.hub_dataset is not None:
            return [Path(cache["filename"]) for cache in self.hub_dataset.cache_files]
        return [resolve_path(path) for path in self.files]

    def batches(self, desc: str | None = None) -> Iterator[list[str]]:
        """The lines in order, a batch at a time; with `desc` (and `show_progress`), a progress bar counts them."""
        total = len(self.hub_dataset) if self.hub_dataset is not None else None
        with tqdm(total=total, desc=desc, unit=" lines", disable=not (desc and self.show_progress)) as progress:
            for batch in self._hub_batches() if self.hub_dataset is not None else self._local_batches():
                yield batch
                progress.update(len(batch))

    def lines(self, desc: str | None = None) -> Iterator[str]:
        """The lines in order, one at a time (see `batches`)."""
        for batch in self.batches(desc):
            yield from batch

    def __iter__(self) -> Iterator[str]:
        return self.lines()

    def _local_batches(self) -> Iterator[list[str]]:
        empty = True
        for path in self.files:
            for batch in self._file_batches(path):
                empty = False
                yield batch
        if empty:
            raise no_rows_error(list(self.files))

    def _file_batches(self, path: str) -> Iterator[list[str]]:
        suffix = Path(path).suffix.lower()
        if suffix == ".parquet":  # the text column only, a batch of rows at a time
            for batch in parquet_batches(path, columns=[self.text_column]):
                yield _texts(batch.column(0))
        elif suffix == ".txt" and self.text_column == "text":  # plain text: the fast reader, no record per line
            yield from read_text_lines(path, encoding=self.encoding, lines_per_batch=ROWS_PER_BATCH)
        else:
            records = read_records(path, encoding=self.encoding)
            texts = (self._text(location, record) for location, record in records)
            while batch := list(itertools.islice(texts, ROWS_PER_BATCH)):
                yield batch

    def _hub_batches(self) -> Iterator[list[str]]:
        # Column-wise, in Arrow batches: formatting a `Dataset` row by row is ~50x slower.
        self._check_column(hub_location(self.hub_name, self.name, 0), self.hub_dataset.column_names)
        for table in self.hub_dataset.with_format("arrow").iter(batch_size=ROWS_PER_BATCH):
            yield _texts(table.column(self.text_column))

    def _text(self, location: str, record: dict) -> str:
        self._check_column(location, record)
        return str(record[self.text_column] or "")

    def _check_column(self, location: str, columns: Iterable[str]) -> None:
        if self.text_column not in columns:
            raise DataError(f"{location}: missing column {self.text_column!r} (found {sorted(columns)})")


def _texts(column: pa.Array | pa.ChunkedArray) -> list[str]:
    """The lines of a text column (a missing value reads as an empty line)."""
    return [str(value or "") for value in column.to_pylist()]


def prompt_lines(split: TextSplit) -> list[str]:
    """The lines of `split` as generation prompts, one per line; an empty line fails, naming the file and line
    (or the Hub row), since a prompt file holds one prompt per line."""
    is_hub = split.hub_dataset is not None
    parts = [split] if is_hub else [dataclasses.replace(split, files=(path,)) for path in split.files]
    prompts = []
    for part in parts:  # file by file, so that a line number is the line of its file
        for index, prompt in enumerate(part.lines()):
            if not prompt.strip():
                where = (
                    hub_location(split.hub_name, split.name, index)
                    if is_hub
                    else f"{part.description}, row {index}"
                    if part.description.lower().endswith(".parquet")
                    else f"{part.description}, line {index + 1}"
                )
                raise DataError(f"{where}: empty prompt (a prompt file holds one non-empty prompt per line)")
            prompts.append(prompt)
    return prompts


def text_corpus_splits(
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_file: str | Sequence[str] | None = None,
    validation_file: str | Sequence[str] | None = None,
    test_file: str | Sequence[str] | None = None,
    text_column: str = "text",
    encoding: str = "utf-8",
    show_progress: bool = False,
    dataset_revision: str | None = None,
) -> dict[str, TextSplit]:
    """`train`, `validation`, `test` (those present) of a corpus, not yet read: local files win when any are
    given (a file or a list of files per split, read in order; each must exist: `DataError` naming the field),
    otherwise `dataset_name` at `dataset_revision` (None: the default branch) is loaded with
    `datasets.load_dataset` (Arrow files on disk, not in memory)."""
    common = {"text_column": text_column, "encoding": encoding, "show_progress": show_progress}
    files = {
        split: (paths,) if isinstance(paths, str) else tuple(paths or ())
        for split, paths in (("train", train_file), ("validation", validation_file), ("test", test_file))
    }
    if any(files.values()):
        for split, paths in files.items():  # before any tokenizer is trained on another split
            for path in paths:
                if not resolve_path(path).is_file():
                    raise DataError(f"{split}_file: {path}: no such file")
        return {split: TextSplit(split, files=paths, **common) for split, paths in files.items() if paths}
    if not dataset_name:
        raise DataError("no data: give `dataset_name` (a Hub data set) or local files (`train_file`, ...)")
    hub = datasets.load_dataset(dataset_name, dataset_config_name, revision=dataset_revision)
    splits = {
        split: TextSplit(split, hub_dataset=hub[split], hub_name=dataset_name, **common)
        for split in files
        if split in hub
    }
    if not splits:
        raise DataError(f"{dataset_name}: none of the splits {list(files)} found (have {sorted(hub)})")
    return splits


def load_text_corpus(**kwargs: str | None) -> datasets.DatasetDict:
    """The splits of `text_corpus_splits(**kwargs)` read into memory, one row `{"text": line}` per line: for
    small corpora (the benches' WikiText-2); the recipes stream theirs through `data.token_cache`."""
    splits = text_corpus_splits(**kwargs)
    return datasets.DatasetDict(
        {name: datasets.Dataset.from_dict({"text": list(split)}) for name, split in splits.items()}
    )
