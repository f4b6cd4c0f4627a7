"""Read local data files row by row, remembering where each row came from; write jsonl.

Recipes validate every row and must say *where* a bad row is (`train.tsv, line 17`), so this reader
yields `(location, record)` pairs instead of handing files to `datasets.load_dataset`, whose parse
errors name neither. Formats are picked by extension: csv, tsv, json (an array of objects, or one
object per line), jsonl, txt (one record `{"text": line}` per line), parquet (typed columns; a row is
named by its index, `train.parquet, row 0` for the first, as pandas and the Hub's rows count).

Text files are read in `encoding` (UTF-8 by default). A UTF-8 byte-order mark, as spreadsheets write, is
skipped; a byte that is not valid in the encoding fails naming the file, line and byte (`latin-1` reads
any byte, so the MR movie reviews need `encoding: latin-1`).
"""

import codecs
import csv
import itertools
import json
import logging
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError

SUPPORTED_EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl", ".txt", ".parquet")
#: Rows of a parquet file read at once.
PARQUET_ROWS_PER_BATCH = 10_000
REPO_ROOT = Path(__file__).resolve().parents[1]

logger = logging.getLogger(__name__)


def resolve_path(path: str | Path) -> Path:
    """`path` as given if it exists; a relative path that does not is looked up from the repository root.

    The shipped configs name `data/samples/...`, and a recipe may be launched from any directory.
    """
    path = Path(path)
    if path.exists() or path.is_absolute() or not (REPO_ROOT / path).exists():
        return path
    return REPO_ROOT / path


def cache_root() -> Path:
    """`$FINETUNE_RECIPES_CACHE`, by default `~/.cache/finetune-recipes`: where tokenised data and trained
    tokenizers are kept between runs."""
    return Path(os.environ.get("FINETUNE_RECIPES_CACHE") or Path.home() / ".cache" / "finetune-recipes")


def file_identity(paths: Iterable[str | Path]) -> list[list]:
    """`[resolved path, size, mtime in ns]` of each file: what cache keys hold for the data read from them.

    Path + size + mtime rather than a content hash: an edited or replaced file changes its mtime, and hashing
    gigabytes would cost every process seconds on every start. (A file rewritten with identical size and a
    restored mtime would not be noticed.)
    """
    return [
        [str(path.resolve()), stat.st_size, stat.st_mtime_ns] for path in map(Path, paths) for stat in [path.stat()]
    ]


def read_records(path: str | Path, *, encoding: str = "utf-8") -> Iterator[tuple[str, dict]]:
    """Yields `(location, record)` for every row of a local file; `location` is `"<path>, line <n>"`
    (`"<path>, row <index>"` for parquet, whose records hold the columns' typed values).

    Raises `DataError` for a missing file, an unknown extension, a byte not valid in `encoding`, or a row
    that does not parse.
    """
    path = existing_file(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        index = 0
        for batch in parquet_batches(path):
            for record in batch.to_pylist():
                yield f"{path}, row {index}", record
                index += 1
        return
    with _open_text(path, encoding, newline="" if suffix in (".csv", ".tsv") else None) as f:
        if suffix in (".csv", ".tsv"):
            yield from _read_delimited(path, f)
        elif suffix == ".txt":
            for line_number, line in enumerate(f, start=1):
                yield f"{path}, line {line_number}", {"text": line.rstrip("\n")}
        else:
            yield from _read_json(path, f)


def read_text_lines(path: str | Path, *, encoding: str = "utf-8", lines_per_batch: int = 10_000) -> Iterator[list[str]]:
    """The lines of a text file (newline removed), a batch at a time: what `read_records` gives for a `.txt`
    file, without a record and a location string per line (~3x faster on a 100M-word corpus). The same
    errors: a missing file, a byte not valid in `encoding` named by line and byte."""
    with _open_text(existing_file(path), encoding, newline=None) as f:
        while batch := [line.rstrip("\n") for line in itertools.islice(f, lines_per_batch)]:
            yield batch


def parquet_batches(path: str | Path, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of a parquet file (`PARQUET_ROWS_PER_BATCH` rows each; only `columns` if given).

    Raises `DataError` naming the file for a missing file, one that is not parquet, or a missing column.
    """
    path = existing_file(path)
    try:
        parquet = pq.ParquetFile(path)
        found = parquet.schema_arrow.names
        if missing := [column for column in columns or () if column not in found]:
            raise DataError(f"{path}: missing column {missing[0]!r} (found {sorted(found)})")
        yield from parquet.iter_batches(batch_size=PARQUET_ROWS_PER_BATCH, columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: not a readable parquet file ({error})") from None


def write_jsonl(path: str | Path, rows: Sequence[dict]) -> None:
    """One JSON object per line (UTF-8, not ASCII-escaped, so predictions stay readable), replacing `path`:
    the form `read_records` reads back, one record per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    logger.info("wrote %d rows to %s", len(rows), path)


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """`with atomic_file(path) as tmp:` write `tmp`; it becomes `path` only if the block completes, so a run
    killed mid-way leaves a temporary file that no run reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def existing_file(path: str | Path) -> Path:
    """`path` resolved (`resolve_path`); `DataError` naming it if it is not a file of a supported extension."""
    path = resolve_path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise DataError(f"{path}: unsupported extension {suffix!r}; expected one of {SUPPORTED_EXTENSIONS}")
    return path


@contextmanager
def _open_text(path: Path, encoding: str, newline: str | None) -> Iterator[TextIO]:
    """`path` opened for reading text; a decoding error becomes a `DataError` naming the line and byte."""
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"  # the same codec, but a leading byte-order mark is skipped, not read as text
    try:
        with path.open(encoding=encoding, newline=newline) as f:
            yield f
    except UnicodeDecodeError as error:
        line, byte = _locate_decoding_error(path, encoding)
        raise DataError(
            f"{path}, line {line}, byte {byte}: not valid {error.encoding} ({error.reason}); "
            "give the file's encoding, e.g. `encoding: latin-1`"
        ) from None


def _locate_decoding_error(path: Path, encoding: str) -> tuple[int, int]:
    """(line, byte offset in the file) of the first byte that `encoding` cannot decode. Only called after a
    failure, so the second read costs nothing on good files."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, line = 0, 1
    with path.open("rb") as f:
        for raw_line in f:
            try:
                line += decoder.decode(raw_line).count("\n")
            except UnicodeDecodeError as error:
                return line, offset + error.start
            offset += len(raw_line)
    return line, offset


def delimited_dialect(path: Path) -> dict:
    """`csv.reader` options for a `.tsv` or `.csv` file. QUOTE_NONE for tsv: GLUE-style tsv files contain bare
    quote characters inside sentences."""
    tsv = path.suffix.lower() == ".tsv"
    return {"delimiter": "\t" if tsv else ",", "quoting": csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL}


def _read_delimited(path: Path, f: TextIO) -> Iterator[tuple[str, dict]]:
    reader = csv.reader(f, **delimited_dialect(path))
    header = next(reader, None)
    if not header:
        raise DataError(f"{path}, line 1: empty file, expected a header row")
    for row in reader:
        location = f"{path}, line {reader.line_num}"
        if len(row) != len(header):
            raise DataError(f"{location}: {len(row)} fields, the header has {len(header)} ({header})")
        yield location, dict(zip(header, row, strict=True))


def _read_json(path: Path, f: TextIO) -> Iterator[tuple[str, dict]]:
    first = f.read(1)
    while first.isspace():
        first = f.read(1)
    f.seek(0)
    if first == "[":
        yield from _read_json_array(path, f.read())
        return
    for line_number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        location = f"{path}, line {line_number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{location}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{location}: expected a JSON object, got {type(record).__name__}")
        yield location, record


def _read_json_array(path: Path, text: str) -> Iterator[tuple[str, dict]]:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}, line {error.lineno}: not valid JSON ({error.msg})") from None
    for index, record in enumerate(records):
        location = f"{path}, item {index}"
        if not isinstance(record, dict):
            raise DataError(f"{location}: expected a JSON object, got {type(record).__name__}")
        yield location, record
