"""Token ids of a corpus, computed once per machine and memory-mapped by every process.

`prepare_token_streams` turns each split of a corpus into one flat stream of token ids (an `<eos>` after
every line when asked, exactly as `data.streams.encode_stream`), tokenised in batches of lines by the fast
tokenizer (a plain word-level one by a dictionary lookup that gives the same ids) and written as a `.npy`
file of int32 ids; every process (and every later run) maps that file with `np.load(mmap_mode="c")` and
wraps it with `torch.from_numpy`, so the processes of a machine share one copy through the page cache and
a rank's rows are views into it. Recipes call it inside
`TrainingArguments.main_process_first()`, so one process per machine tokenises and the others find its file.

Why a `.npy` file, not `datasets`' cache (`Dataset.map`): the result is one flat array, not a column of
per-line lists; `map` would store int64 lists with offsets, and every process would still have to flatten
them into a stream. A `.npy` maps with zero copies, and `np.load` reads it with nothing of this project.

The cache key (a sha256 prefix in the file name) covers: the source files' resolved path, size and
modification time (local files, or the Arrow files `datasets` keeps a Hub split in, whose path holds the
revision); the text column and encoding; the tokenizer (`backend_tokenizer.to_str()`); `add_eos`; the id
dtype; and a format version. Path + size + mtime rather than a content hash: an edited or replaced file
changes its mtime, and hashing 540 MB would cost every process seconds on every start. (A file rewritten
with identical size and a restored mtime would not be noticed.)

A file is written under a temporary name in the cache folder and renamed (`os.replace`, atomic) only once
complete, so a run killed mid-way leaves a temporary file that no run reads. A cache file damaged later (cut
short by a full disk or a killed copy, or overwritten) is checked before it is mapped: its `.npy` header
must read back and give the file's exact size (header + length x item size); if not, one warning names the
file and the split is tokenised again into it. (A file of the right size whose ids were altered would not
be noticed: checksumming the 400 MB of WikiText-103 ids would cost every process seconds at every start.)
Tokenizers trained from the data are cached the same way (`train_tokenizer_once`), keyed by the training split
(its files, as above, or the texts themselves when a recipe holds them in memory), kind, size and
`data.tokenizers.TRAINER_VERSION` (a cache filled by an earlier trainer is not reused), so one process of a
machine trains it and every other process and every later run loads it: training gives the same vocabulary in any
process (`data.tokenizers`), but reading a large split again costs each of them time.
"""

import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from tokenizers import models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from .errors import DataError
from .files import atomic_file, cache_root, file_identity
from .lm_corpus import TextSplit
from .tokenizers import EOS_TOKEN, TRAINER_VERSION, TokenizerKind, train_tokenizer

logger = logging.getLogger(__name__)

#: Bumped when the layout of cached files changes, so old files are not read.
CACHE_VERSION = 1
#: The `.npy` header is written last, when the length is known, into this many bytes reserved at the start
#: (numpy pads the header to a multiple of 64 bytes: 128 for a 1-d array of any length up to 2**63).
_NPY_HEADER_BYTES = 128


def default_cache_dir() -> Path:
    """`$FINETUNE_RECIPES_CACHE/token_streams`, by default `~/.cache/finetune-recipes/token_streams`."""
    return cache_root() / "token_streams"


def prepare_token_streams(
    corpus: dict[str, TextSplit], tokenizer: PreTrainedTokenizerFast, *, add_eos: bool, cache_dir: str | None = None
) -> dict[str, torch.Tensor]:
    """Each split's token ids as a 1-d int32 tensor over a memory-mapped file of `cache_dir` (written first if
    no earlier run wrote it). Slices are views; convert a batch with `.long()` when a model needs int64 ids."""
    return {
        name: token_stream(split, tokenizer, add_eos=add_eos, cache_dir=cache_dir) for name, split in corpus.items()
    }


def token_stream(
    split: TextSplit, tokenizer: PreTrainedTokenizerFast, *, add_eos: bool, cache_dir: str | None = None
) -> torch.Tensor:
    """One split's token ids; see `prepare_token_streams`."""
    dtype = np.dtype(np.int32 if len(tokenizer) <= np.iinfo(np.int32).max else np.int64)
    key = _key(_source(split), tokenizer.backend_tokenizer.to_str(), add_eos, dtype.str)
    path = Path(cache_dir or default_cache_dir()) / f"{split.name}-{key}.npy"
    damage = _damage(path, dtype) if path.is_file() else None
    if damage:
        logger.warning("%s: %s; tokenising split %r again", path, damage, split.name)
    if damage or not path.is_file():
        with atomic_file(path) as tmp:
            if _write_npy(tmp, _encode_batches(split, tokenizer, add_eos=add_eos), dtype) == 0:
                raise DataError(f"{split.description}: no tokens in split {split.name!r}")
    return torch.from_numpy(np.load(path, mmap_mode="c"))  # copy-on-write: writable for torch, never written back


def train_tokenizer_once(
    texts: TextSplit | Iterable[str], *, kind: TokenizerKind, vocab_size: int, cache_dir: str | None = None
) -> PreTrainedTokenizerFast:
    """`train_tokenizer` on `texts`, or the tokenizer an earlier call saved for the same texts, kind and size.

    `texts`: a corpus split, keyed by its files (never read whole), or texts in memory, keyed by their content:
    a list or any iterable that can be read twice (a `datasets` column, `data.loading.RowTexts`),
    read once for the key and once more, streamed, into the trainer (a list of 5M sentences costs gigabytes).
    The tokenizer is always loaded from the cache folder, so the first run and later runs, and every process
    that calls this after the first (recipes call it inside `main_process_first`), use the very same tokenizer
    (and so the same token-stream cache key)."""
    if isinstance(texts, TextSplit):
        source, lines = _source(texts), texts.lines(desc=f"{texts.name}: counting for the {kind} tokenizer")
    elif iter(texts) is texts:
        raise TypeError("train_tokenizer_once reads the texts twice (key, then training): pass a re-iterable")
    else:
        source, lines = _content_digest(texts), (text for text in texts)
    key = _key(source, kind, vocab_size, TRAINER_VERSION)
    folder = Path(cache_dir or default_cache_dir()) / f"tokenizer-{kind}-{key}"
    if not folder.is_dir():
        tokenizer = train_tokenizer(lines, kind=kind, vocab_size=vocab_size)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f"{folder.name}.tmp-"))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        try:
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, folder)
        except OSError:  # another process renamed its copy first: keep that one
            if not folder.is_dir():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def _source(split: TextSplit) -> list:
    return [file_identity(split.source_files()), split.text_column, split.encoding]


def _content_digest(texts: Iterable[str]) -> str:
    """sha256 of the texts in order, each prefixed by its length (so `["ab", "c"]` and `["a", "bc"]` differ)."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([CACHE_VERSION, *parts]).encode()).hexdigest()[:16]


def _encode_batches(split: TextSplit, tokenizer: PreTrainedTokenizerFast, *, add_eos: bool) -> Iterator[np.ndarray]:
    """The ids of each batch of lines, as `tokenizer([line + " <eos>" ...], add_special_tokens=False)` gives
    them: from the Rust tokenizer directly (no offsets computed, no Python lists kept), or, for a plain
    word-level tokenizer, by looking the words up (`_word_lookup`)."""
    suffix = f" {EOS_TOKEN}" if add_eos else ""
    look_up = _word_lookup(tokenizer)
    for lines in split.batches(desc=f"{split.name}: tokenising"):
        texts = [line + suffix for line in lines]
        ids = look_up(" ".join(texts)) if look_up else None
        if ids is None:
            encodings = tokenizer.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)
            ids = np.fromiter(itertools.chain.from_iterable(encoding.ids for encoding in encodings), dtype=np.int64)
        yield ids


#: Characters that `str.split()` splits on and the Rust `WhitespaceSplit` does not (tested).
_PYTHON_ONLY_WHITESPACE = "\x1c\x1d\x1e\x1f"


def _word_lookup(tokenizer: PreTrainedTokenizerFast) -> Callable[[str], np.ndarray | None] | None:
    """For a tokenizer that only splits on whitespace and looks words up (ours, `kind="word"`): text -> ids by
    one dictionary lookup per word, in C, a quarter of the CPU time of the Rust encoder (whose per-token
    `Encoding` objects dominate for whole words). The function returns None where the two could differ, and
    the caller uses the Rust encoder: a character only Python splits on, or an added token (`<eos>`, `<unk>`)
    inside a word, which Rust would cut out of it. None for any other tokenizer."""
    backend = tokenizer.backend_tokenizer
    if not (
        isinstance(backend.model, models.WordLevel)
        and backend.normalizer is None
        and isinstance(backend.pre_tokenizer, pre_tokenizers.WhitespaceSplit)
    ):
        return None
    vocab = backend.get_vocab(with_added_tokens=True)
    unknown = vocab[backend.model.unk_token]
    added = {token.content: token_id for token_id, token in tokenizer.added_tokens_decoder.items()}

    def look_up(text: str) -> np.ndarray | None:
        if any(char in text for char in _PYTHON_ONLY_WHITESPACE):
            return None
        words = text.split()
        ids = np.fromiter(map(vocab.get, words, itertools.repeat(-1)), dtype=np.int64, count=len(words))
        if any(text.count(token) != np.count_nonzero(ids == token_id) for token, token_id in added.items()):
            return None  # an added token inside a word
        ids[ids < 0] = unknown
        return ids

    return look_up


def _damage(path: Path, dtype: np.dtype) -> str | None:
    """What is wrong with the cached `.npy` file at `path` (None if nothing): a header that does not read
    back as a 1-d array of `dtype`, or a size other than the header's promise."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            if np.lib.format.read_magic(f) != (1, 0):  # the version `_write_npy` writes
                return "not a .npy file of version 1.0"
            shape, fortran_order, stored = np.lib.format.read_array_header_1_0(f)
            data_start = f.tell()
    except (ValueError, OSError) as error:
        return f"unreadable header ({error})"
    if stored != dtype or len(shape) != 1 or fortran_order:
        return f"header of a {stored} array of shape {shape}, expected 1-d {dtype}"
    expected = data_start + shape[0] * dtype.itemsize
    if size != expected:
        return f"{size} bytes, its header promises {expected} (cut short or overwritten)"
    return None


def _write_npy(path: Path, chunks: Iterator[np.ndarray], dtype: np.dtype) -> int:
    """Writes the concatenated `chunks` as a 1-d `.npy` of `dtype` without holding them; returns the length."""
    with open(path, "wb") as f:
        f.seek(_NPY_HEADER_BYTES)
        length = 0
        for chunk in chunks:
            chunk.astype(dtype).tofile(f)
            length += chunk.size
        f.seek(0)
        np.lib.format.write_array_header_1_0(f, {"descr": dtype.str, "fortran_order": False, "shape": (length,)})
        if f.tell() != _NPY_HEADER_BYTES:
            raise RuntimeError(f"npy header of {f.tell()} bytes, expected {_NPY_HEADER_BYTES}")
        f.flush()
        os.fsync(f.fileno())
    return length
