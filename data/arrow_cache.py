"""Rows and their tokenised features, written once per machine as Arrow files that every run memory-maps.

The sentiment and QA recipes read their rows through `data.loading` (every row converted and checked, a bad one
named by file and line) and tokenise them with `Dataset.map`. Both steps are cached in
`$FINETUNE_RECIPES_CACHE/datasets` (`data.files.cache_root`), so a repeat run reads neither the files nor the
tokenizer's output again, and no step holds all rows as Python objects:

- `cached_rows` writes the converted rows in Arrow record batches to `<split>-<key>.arrow` (under a temporary name,
  renamed once complete) and opens it with `Dataset.from_file` (memory-mapped). A well-formed file is converted a
  column batch at a time (`data.columnar_rows`), any other row by row. The key covers what the rows depend
  on: the source files' identity (`data.files.file_identity`: path, size, mtime; for a Hub split its Arrow files),
  the conversion settings (columns, label names) and the features. An edited file gets a new key, so it is read
  again; an unchanged one is reused. The memory Arrow's allocator kept from the conversion goes back to the system
  once the file is written (mimalloc held about 0.1 GB of it for the rest of a 2M-question run).
- `tokenize_once` runs `map` (batched, `num_proc` workers) with a fingerprint made of the dataset's own
  (`datasets`' fingerprint: its file and every `select` since), the tokenizer's definition (`tokenizer_definition`)
  and the settings of the tokenising function; `datasets` keeps the result next to the rows
  (`cache-<fingerprint>.arrow`) and loads it on a repeat run without calling the function. (Not `datasets`' own hash
  of the function: it pickles the tokenizer, whose state changes with the truncation of its last call.) It writes
  record batches of `ROWS_PER_WRITE` rows, not `map`'s 1,000: opening the file reads every batch's header, and
  each read maps the 64 KiB around it (the kernel's fault-around), 0.13 GB of resident memory at 2M questions.

Why not `Dataset.from_generator`: it writes one example at a time through `datasets`' `ArrowWriter`, about 23 us a
row here (2 minutes for 5M rows, before any parsing), where a record batch costs about 1 us a row. It also wraps an
error of the generator in `DatasetGenerationError`; rows converted here raise our `DataError` as they are.
`CACHE_VERSION` is bumped when the conversion or tokenising code changes what it writes.
"""

import contextlib
import gc
import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import pyarrow as pa
from transformers import PreTrainedTokenizerBase

from .files import atomic_file, cache_root

logger = logging.getLogger(__name__)

#: Bumped when the rows or tokenised features written for the same inputs change, so old files are not read.
CACHE_VERSION = 2
#: Rows converted (or tokenised) and held at once while writing: one Arrow record batch.
ROWS_PER_WRITE = 10_000
#: Parts of a Rust tokenizer's definition that a call sets (`truncation=True, max_length=...`), not the tokenizer.
_PER_CALL = ("truncation", "padding")


def cache_key(*parts: object) -> str:
    """A 16-hex-digit digest of `parts` (JSON-serialisable) and `CACHE_VERSION`."""
    return hashlib.sha256(json.dumps([CACHE_VERSION, *parts]).encode()).hexdigest()[:16]


def cached_rows(
    name: str,
    rows: Callable[[], Iterator[dict]],
    *,
    features: datasets.Features,
    key: list,
    tables: Callable[[], Iterator[pa.Table | None] | None] | None = None,
) -> datasets.Dataset:
    """The rows that `rows()` yields, as a memory-mapped `Dataset` of `features`: read from the file an earlier
    call with the same `name` and `key` wrote, else written first. With `tables`, the same rows converted a batch
    at a time (`data.columnar_rows`) are tried first: if it gives `None`, or a batch is `None` or fails to parse,
    what it wrote is dropped and `rows()` is written instead (its errors pass through). A file that does not open
    (cut short by a full disk) is written again, with a warning."""
    path = cache_root() / "datasets" / f"{name}-{cache_key(key, features.to_dict())}.arrow"
    if path.is_file():
        try:
            dataset = datasets.Dataset.from_file(str(path))
            logger.info("%s: %d rows from the cache %s", name, len(dataset), path)
            return dataset
        except (pa.ArrowInvalid, OSError) as error:
            logger.warning("%s: unreadable (%s); reading split %r again", path, error, name)
    with atomic_file(path) as tmp:
        written = _write_columnar(tmp, tables, features.arrow_schema) if tables else 0
        if not written:  # no columnar reading, or no rows: the row path names an empty file
            written = _write_tables(tmp, _record_batches(rows(), features.arrow_schema), features.arrow_schema)
    pa.default_memory_pool().release_unused()
    logger.info("%s: %d rows read into %s", name, written, path)
    return datasets.Dataset.from_file(str(path))


def tokenize_once(
    dataset: datasets.Dataset,
    function: Callable[[dict[str, list]], dict[str, list]],
    *,
    tokenizer: PreTrainedTokenizerBase,
    settings: dict,
    remove_columns: list[str],
    num_proc: int | None = None,
) -> datasets.Dataset:
    """`dataset.map(function, batched=True, remove_columns=..., num_proc=...)` a `ROWS_PER_WRITE` batch at a time,
    computed once: a later call on the same rows with the same tokenizer and `settings` loads the result without
    calling `function`.

    `settings` must hold everything besides the tokenizer's definition that `function` depends on (lengths,
    templates, token ids it adds from Python); call it under `TrainingArguments.main_process_first()` so one
    process per machine writes the result and the others load it. The tokenizer comes back as it was given
    (`per_call_settings_kept`), whether `function` ran or the result came from the cache.
    """
    fingerprint = cache_key(dataset._fingerprint, tokenizer_definition(tokenizer), settings)
    with per_call_settings_kept(tokenizer), objects_frozen():
        return dataset.map(
            function,
            batched=True,
            batch_size=ROWS_PER_WRITE,
            writer_batch_size=ROWS_PER_WRITE,
            remove_columns=remove_columns,
            num_proc=num_proc,
            new_fingerprint=fingerprint,
            desc="tokenizing",
        )


@contextlib.contextmanager
def per_call_settings_kept(tokenizer: PreTrainedTokenizerBase) -> Iterator[None]:
    """Puts back the truncation and padding (`_PER_CALL`) of `tokenizer`'s Rust tokenizer that calls inside the
    block set (`truncation=True, max_length=64` stays there after the call). They are saved with it in
    `tokenizer.json` and a folder loads them as its defaults: without this, a run that tokenised saved another
    `tokenizer.json` than the same run reading its features from the cache (measured on the sentiment tiny run)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a Python tokenizer keeps no such settings
        yield
        return
    truncation, padding = backend.truncation, backend.padding
    try:
        yield
    finally:
        if truncation is None:
            backend.no_truncation()
        else:
            backend.enable_truncation(**truncation)
        if padding is None:
            backend.no_padding()
        else:
            backend.enable_padding(**padding)


@contextlib.contextmanager
def objects_frozen() -> Iterator[None]:
    """Moves every object alive when the block starts out of the garbage collector's sight until it ends
    (`gc.freeze`): the lists a tokenising batch makes trigger full collections, each of which otherwise walks
    every object the imports made (torch, transformers: hundreds of thousands). Forked `map` workers inherit the
    frozen set, so their collections skip the parent's objects too, and leave those pages shared. Where a caller
    froze objects already, the block leaves the collector as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def tokenizer_definition(tokenizer: PreTrainedTokenizerBase) -> str:
    """A digest of everything that decides the ids `tokenizer` gives: its Rust definition (vocabulary, normaliser,
    pre-tokeniser, post-processor, added tokens) without the truncation and padding that each call sets there
    (a call with `max_length=4` leaves it in `to_str()`), or for a tokenizer without one, `datasets`' hash of it."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        definition = datasets.fingerprint.Hasher.hash(tokenizer)
    else:
        definition = {key: value for key, value in json.loads(backend.to_str()).items() if key not in _PER_CALL}
    return cache_key(type(tokenizer).__name__, definition)


def _write_columnar(path: Path, tables: Callable[[], Iterator[pa.Table | None] | None], schema: pa.Schema) -> int:
    """`_write_tables` of `tables()`; 0 (the file then holds nothing usable) when `tables()` or one of its tables is
    `None` or a table fails to parse: the rows are then for the row path to read, and to name."""
    try:
        batches = tables()
        return 0 if batches is None else _write_tables(path, map(_converted, batches), schema)
    except (pa.ArrowException, UnicodeDecodeError, _RowPathNeeded) as error:
        logger.info("%s: read row by row (%s)", path.name, error or "a batch the columns do not convert")
        return 0


class _RowPathNeeded(Exception):
    """A batch that the columnar converter left to the row path."""


def _converted(table: pa.Table | None) -> pa.Table:
    if table is None:
        raise _RowPathNeeded
    return table


def _write_tables(path: Path, tables: Iterator[pa.Table], schema: pa.Schema) -> int:
    """Writes `tables` as one Arrow stream of `schema` (the format `Dataset.from_file` maps); returns the rows."""
    written = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for table in tables:
            writer.write_table(table.select(schema.names).cast(schema))
            written += len(table)
    return written


def _record_batches(rows: Iterator[dict], schema: pa.Schema) -> Iterator[pa.Table]:
    """`rows` as tables of `ROWS_PER_WRITE` rows (the last one shorter)."""
    while batch := list(itertools.islice(rows, ROWS_PER_WRITE)):
        yield pa.Table.from_pylist(batch, schema=schema)
