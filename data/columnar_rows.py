"""Well-formed local files read and checked a column at a time, for the same rows the row-by-row path gives.

`data.loading` converts each record in Python (`convert(location, record)`), so that a bad row is named by file and
line; at millions of rows that costs about 5 us a row, most of a first run's reading time. A task may also give a
columnar converter (`TableConverter`): it checks and converts a whole Arrow batch with `pyarrow.compute` and returns
`None` when any row needs a decision it does not take (a missing or empty value, a label outside the set, a type it
does not handle). Then the row path runs from the start, names the row, or converts it; so the columnar path never
accepts a row that the row path refuses, and where it accepts a batch its rows equal the row path's.

Read this way: `.tsv` and `.csv` (pyarrow's CSV reader, every column as a string, as the `csv` module gives them;
TSV without quoting, CSV with `"` quoting and newlines in quoted values), newline-delimited JSON (`.jsonl`, and
`.json` unless it is one array), in UTF-8, and parquet (its typed columns as stored: integer labels, lists of answers;
the row path reads the same values as Python objects, so a type the converter does not take goes there). Anything the
reader refuses (a wrong field count, a byte that is not UTF-8, a JSON type that changes between rows, a file that is
not parquet) also sends the split to the row path.

`strip_python_whitespace` trims exactly what `str.strip()` trims (Arrow's own trim knows no `\\x1c`-`\\x1f`), and
`is_python_blank` finds exactly the values for which `not value.strip()`, so both paths agree on which values are
empty.
"""

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from .files import PARQUET_ROWS_PER_BATCH, delimited_dialect, existing_file

#: A task's columnar conversion of one batch of raw columns into its features, or `None` to use the row path.
TableConverter = Callable[[pa.Table], pa.Table | None]
#: Bytes the readers parse at once: one batch of rows (NQ-open: about 10,000 questions). A reader parses several
#: blocks ahead on its threads and each batch's conversion copies it a few times: 2M questions read with 16 MiB
#: blocks peaked about 0.4 GB above the start, with 1 MiB blocks 0.1 GB, at the same speed.
BLOCK_BYTES = 1 << 20
#: Every character `str.isspace()` holds true for (all below U+3001): what `str.strip()` removes.
PYTHON_WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())
_BLANK = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in PYTHON_WHITESPACE) + "]*$"


def read_batches(paths: list[str]) -> Iterator[pa.Table] | None:
    """The raw columns of `paths` (UTF-8), a batch of rows at a time; `None` if a file's format has no columnar
    reader here. A parse error surfaces as `pa.ArrowInvalid` while iterating."""
    files = [existing_file(path) for path in paths]
    if not all(_columnar_format(path) for path in files):
        return None
    return (pa.Table.from_batches([batch]) for path in files for batch in _open(path))


def strip_python_whitespace(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """`value.strip()` of every string."""
    return pc.utf8_trim(values, characters=PYTHON_WHITESPACE)


def is_python_blank(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """`not value.strip()` of every string (an empty string, or whitespace only)."""
    return pc.match_substring_regex(values, _BLANK)


def any_true(mask: pa.ChunkedArray | pa.Array) -> bool:
    """Whether any value of a boolean array is true (nulls count as true: they need the row path)."""
    return mask.null_count > 0 or pc.any(mask).as_py() is True


def _columnar_format(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".csv", ".jsonl", ".parquet"):
        return True
    if suffix == ".json":  # one object per line, not one array
        with path.open("rb") as f:
            return f.read(4096).lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()[:1] not in (b"[", b"")
    return False


def _open(path: Path) -> Iterator[pa.RecordBatch]:
    if path.suffix.lower() in (".tsv", ".csv"):
        return _open_delimited(path)
    if path.suffix.lower() == ".parquet":
        return pq.ParquetFile(path).iter_batches(batch_size=PARQUET_ROWS_PER_BATCH)
    return pa_json.open_json(path, read_options=pa_json.ReadOptions(block_size=BLOCK_BYTES))


def _open_delimited(path: Path) -> Iterator[pa.RecordBatch]:
    """The file's rows with every column a string, named by the header, as `csv.reader` parses them with
    `delimited_dialect`: TSV with no quoting, CSV with `"` quotes (doubled inside a quoted value, which may hold
    newlines). A blank line is a row of one empty field, which the reader refuses where the header has more."""
    dialect = delimited_dialect(path)
    with path.open(encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f, **dialect), None)
    if not header or len(set(header)) != len(header):
        raise pa.ArrowInvalid(f"{path}: no header, or a repeated column name")
    quoted = dialect["quoting"] != csv.QUOTE_NONE
    parse = pa_csv.ParseOptions(
        delimiter=dialect["delimiter"],
        quote_char='"' if quoted else False,
        newlines_in_values=quoted,
        ignore_empty_lines=False,
    )
    convert = pa_csv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False)
    read = pa_csv.ReadOptions(block_size=BLOCK_BYTES)
    return pa_csv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
