"""One token stream, cut for a language model: ordered segments for models with memory (Transformer-XL,
`StreamSegments`), fixed blocks for training a model without memory (`TokenBlocks`), and overlapping windows
that score every token once when evaluating one (`SlidingWindows`).

`StreamSegments`: memory is only useful if row r of batch t+1 continues row r of batch t. The corpus is
one token stream, cut into `num_streams` contiguous rows (the paper's "batchify"); batch t holds columns
`[t * tgt_len, (t + 1) * tgt_len)` of every row as inputs and the same columns shifted by one as
targets (`target_ids`), so each token after a row's first is scored exactly once, across segment boundaries too.

Under N processes each rank owns a contiguous block of whole rows (`num_streams / N` each when N divides
it, as in training; else the first `num_streams % N` ranks hold one more, and a rank may hold none) and walks
them in order; no sampler touches them, so nothing (accelerate's batch sharding included) can interleave
them. The cut into rows never depends on N, so neither do the tokens scored nor the context each one sees.
Shuffling, when asked for, only moves where the streams start (a new offset per epoch) and never breaks a
stream.

Worked example, 10 tokens, 2 streams, `tgt_len` 2:
    rows = [[0 1 2 3 4], [5 6 7 8 9]]
    batch 0: input_ids [[0 1], [5 6]], target_ids [[1 2], [6 7]]
    batch 1: input_ids [[2 3], [7 8]], target_ids [[3 4], [8 9]]   (4 and 9 are scored; nothing after)

`max_rows_per_batch` (evaluation: a rank may hold more streams than fit in one batch) walks a rank's rows in
groups of at most that many, one group after the other, each from its first segment (`segment_index` 0, so
the memory is reset). Worked example, 14 tokens, 3 streams, `tgt_len` 2, 2 ranks, `max_rows_per_batch` 1:
    rows = [[0 1 2 3], [4 5 6 7], [8 9 10 11]]   (12 and 13 left out: fewer than one per stream)
    rank 0 owns rows 0 and 1, rank 1 row 2
    rank 0, item 0: input_ids [[0 1]], target_ids [[1 2]], segment_index 0
            item 1: input_ids [[2]],   target_ids [[3]],   segment_index 1
            item 2: input_ids [[4 5]], target_ids [[5 6]], segment_index 0
            item 3: input_ids [[6]],   target_ids [[7]],   segment_index 1
    rank 1, item 0: input_ids [[8 9]], target_ids [[9 10]], segment_index 0
            item 1: input_ids [[10]],  target_ids [[11]],   segment_index 1
"""

import math
import random
from collections.abc import Iterable

import torch
from torch.utils.data import Dataset

from .errors import DataError
from .labels import IGNORE_INDEX
from .tokenizers import EOS_TOKEN


def encode_stream(lines: Iterable[str], tokenizer, *, add_eos: bool = True) -> torch.Tensor:
    """One int64 token stream from text lines, with an end-of-line token after each line (as in WikiText LM).

    Holds every line's ids as Python ints: for small corpora (the benches' WikiText-2). The recipes use
    `data.token_cache.prepare_token_streams`, which gives the same ids without holding the corpus."""
    suffix = f" {EOS_TOKEN}" if add_eos else ""
    encoded = tokenizer([line + suffix for line in lines], add_special_tokens=False)["input_ids"]
    return torch.tensor([token for line_ids in encoded for token in line_ids], dtype=torch.long)


class StreamSegments(Dataset):
    """Batch t (a whole batch per item) of this rank's rows: `input_ids`, `target_ids`, `segment_index`.

    `segment_index` is 0 at the start of the streams, which is where memory must be reset. Use with
    `DataLoader(dataset, batch_size=None)` so items are not batched again. `token_ids` may be a memory-mapped
    int32 stream (`data.token_cache`): the rows are views into it, and only each item is copied, as int64.
    With `max_rows_per_batch`, the items are those of each group of at most that many rows in turn (see the
    module docstring); a rank with no rows has no items.
    A stream too short for `num_streams` rows of 2 tokens is a `DataError` naming `source` (the file the tokens
    were read from), the count, and `num_streams_from` (the setting that sets the number of streams) to lower.
    """

    def __init__(
        self,
        token_ids: torch.Tensor,
        *,
        num_streams: int,
        tgt_len: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle_offset: bool = False,
        seed: int = 0,
        max_rows_per_batch: int | None = None,
        source: str = "the token stream",
        num_streams_from: str = "num_streams",
    ) -> None:
        if num_streams < 1 or tgt_len < 1 or (max_rows_per_batch is not None and max_rows_per_batch < 1):
            raise ValueError(
                f"need num_streams, tgt_len and max_rows_per_batch (or None) >= 1; got num_streams={num_streams}, "
                f"tgt_len={tgt_len}, max_rows_per_batch={max_rows_per_batch}"
            )
        if token_ids.numel() // num_streams < 2:
            raise DataError(
                f"{source}: {token_ids.numel()} tokens are too few for {num_streams} streams of 2 tokens or more: "
                f"lower {num_streams_from}, or give more text"
            )
        self.token_ids = token_ids
        self.num_streams, self.tgt_len = num_streams, tgt_len
        self.rank, self.world_size = rank, world_size
        self.shuffle_offset, self.seed = shuffle_offset, seed
        self.max_rows_per_batch = max_rows_per_batch
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Re-cuts the streams for `epoch`: with `shuffle_offset`, they start at a new seeded offset."""
        offset = random.Random(self.seed + epoch).randrange(self.tgt_len) if self.shuffle_offset and epoch else 0
        stream = self.token_ids[offset:]
        row_len = stream.numel() // self.num_streams
        rows = stream[: row_len * self.num_streams].view(self.num_streams, row_len)
        self.rows = rows.tensor_split(self.world_size, dim=0)[self.rank]  # this rank's own whole rows
        self.row_groups = self.rows.split(self.max_rows_per_batch or len(self.rows)) if len(self.rows) else ()

    @property
    def num_scored_tokens(self) -> int:
        """Tokens that get a prediction: all but the first of each row."""
        return self.rows.shape[0] * (self.rows.shape[1] - 1)

    @property
    def segments_per_row(self) -> int:
        """Items per group of rows: the segments of `tgt_len` (the last one shorter) that score a row."""
        return math.ceil((self.rows.shape[1] - 1) / self.tgt_len)

    def __len__(self) -> int:
        return len(self.row_groups) * self.segments_per_row

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        group, segment_index = divmod(index, self.segments_per_row)
        rows = self.row_groups[group]
        start = segment_index * self.tgt_len
        end = min(start + self.tgt_len, rows.shape[1] - 1)  # the last segment may be shorter
        return {
            "input_ids": rows[:, start:end].long(),
            "target_ids": rows[:, start + 1 : end + 1].long(),
            "segment_index": segment_index,
        }


class TokenBlocks(Dataset):
    """Training blocks of a model without memory: `input_ids` = `labels` = block i of the stream cut into
    `block_size` tokens (the model shifts the labels, so a block's first token is never a target), the tail
    shorter than a block dropped, as in transformers' `run_clm.py`. The blocks are views into `stream` (memory-
    mapped int32 ids from `data.token_cache`); only the block handed out is copied, as int64.

    Worked example, 10 tokens, `block_size` 4:
        block 0: [0 1 2 3], block 1: [4 5 6 7]   (8 and 9 dropped; 0 and 4 are never targets)

    A stream shorter than a block is a `DataError` naming `source` (the file the tokens were read from).
    """

    def __init__(self, stream: torch.Tensor, *, block_size: int, source: str = "the token stream") -> None:
        if stream.numel() < block_size:
            raise DataError(
                f"{source}: {stream.numel()} tokens: fewer than one block of block_size {block_size}: lower "
                "block_size, or give more text"
            )
        self.blocks = stream[: stream.numel() // block_size * block_size].view(-1, block_size)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        block = self.blocks[i].long()
        return {"input_ids": block, "labels": block}


class SlidingWindows(Dataset):
    """Evaluation windows of a model without memory that score every token of the stream after the first
    exactly once, each with the tokens before it as context: at least `block_size - stride` of them (fewer only
    at the start of the stream), so the boundaries of `TokenBlocks` do not leave tokens with no context.

    Window k ends at `end_k = min(block_size + k * stride, n)` and holds the `block_size` tokens before it (the
    whole stream if shorter); its `labels` are its tokens from `end_(k-1)` on (from the second token for window
    0), -100 before. Every window has the same length, so batches stack without padding; the last one ends at
    the end of the stream, with full context and the remaining (fewer than `stride`) new tokens.

    Worked example, 11 tokens, `block_size` 4, `stride` 2 (`--` is -100, not scored):
        window 0: input_ids [0 1 2 3], labels [-- 1 2 3]
        window 1: input_ids [2 3 4 5], labels [-- -- 4 5]
        window 2: input_ids [4 5 6 7], labels [-- -- 6 7]
        window 3: input_ids [6 7 8 9], labels [-- -- 8 9]
        window 4: input_ids [7 8 9 10], labels [-- -- -- 10]   (tokens 1..10 each scored once: 10 = n - 1)

    A stream of fewer than 2 tokens is a `DataError` naming `source` (the file the tokens were read from).
    """

    def __init__(self, stream: torch.Tensor, *, block_size: int, stride: int, source: str = "the token stream") -> None:
        if not 1 <= stride < block_size:
            raise ValueError(f"need 1 <= stride < block_size; got stride={stride}, block_size={block_size}")
        if stream.numel() < 2:
            raise DataError(
                f"{source}: {stream.numel()} tokens: nothing to score (the first token is context only): give more text"
            )
        self.stream, self.stride = stream, stride
        self.block_size = min(block_size, stream.numel())

    @property
    def num_scored_tokens(self) -> int:
        """Tokens that get a prediction: all but the stream's first."""
        return self.stream.numel() - 1

    def __len__(self) -> int:
        return 1 + math.ceil((self.stream.numel() - self.block_size) / self.stride)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        if not 0 <= k < len(self):
            raise IndexError(k)
        end = min(self.block_size + k * self.stride, self.stream.numel())
        start = end - self.block_size
        first_scored = 1 if k == 0 else self.block_size + (k - 1) * self.stride  # where window k - 1 ended
        input_ids = self.stream[start:end].long()
        labels = input_ids.clone()
        labels[: first_scored - start] = IGNORE_INDEX
        return {"input_ids": input_ids, "labels": labels}
