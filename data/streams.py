"""Ordered stream batching for models with segment memory (Transformer-XL).

Memory is only useful if row r of batch t+1 continues row r of batch t. The corpus is one token stream,
cut into `num_streams` contiguous rows (the paper's "batchify"); batch t holds columns
`[t * tgt_len, (t + 1) * tgt_len)` of every row as inputs and the same columns shifted by one as
targets (`target_ids`), so each token after a row's first is scored exactly once, across segment boundaries too.

Under N processes each rank owns `num_streams / N` whole rows and walks them in order; no sampler
touches them, so nothing (accelerate's batch sharding included) can interleave them. Shuffling, when
asked for, only moves where the streams start (a new offset per epoch) and never breaks a stream.

Worked example, 10 tokens, 2 streams, `tgt_len` 2:
    rows = [[0 1 2 3 4], [5 6 7 8 9]]
    batch 0: input_ids [[0 1], [5 6]], target_ids [[1 2], [6 7]]
    batch 1: input_ids [[2 3], [7 8]], target_ids [[3 4], [8 9]]   (4 and 9 are scored; nothing after)
"""

import math
import random
from collections.abc import Iterable

import torch
from torch.utils.data import Dataset

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
    ) -> None:
        if num_streams < 1 or tgt_len < 1 or num_streams % world_size:
            raise ValueError(
                f"need num_streams >= 1 divisible by world_size and tgt_len >= 1; got num_streams={num_streams}, "
                f"world_size={world_size}, tgt_len={tgt_len}"
            )
        if token_ids.numel() // num_streams < 2:
            raise ValueError(f"{token_ids.numel()} tokens are too few for {num_streams} streams")
        self.token_ids = token_ids
        self.num_streams, self.tgt_len = num_streams, tgt_len
        self.rank, self.world_size = rank, world_size
        self.shuffle_offset, self.seed = shuffle_offset, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Re-cuts the streams for `epoch`: with `shuffle_offset`, they start at a new seeded offset."""
        offset = random.Random(self.seed + epoch).randrange(self.tgt_len) if self.shuffle_offset and epoch else 0
        stream = self.token_ids[offset:]
        row_len = stream.numel() // self.num_streams
        rows = stream[: row_len * self.num_streams].view(self.num_streams, row_len)
        self.rows = rows.chunk(self.world_size, dim=0)[self.rank]  # this rank's own whole rows

    @property
    def num_scored_tokens(self) -> int:
        """Tokens that get a prediction: all but the first of each row."""
        return self.rows.shape[0] * (self.rows.shape[1] - 1)

    def __len__(self) -> int:
        return math.ceil((self.rows.shape[1] - 1) / self.tgt_len)

    def __getitem__(self, segment_index: int) -> dict[str, torch.Tensor | int]:
        if not 0 <= segment_index < len(self):
            raise IndexError(segment_index)
        start = segment_index * self.tgt_len
        end = min(start + self.tgt_len, self.rows.shape[1] - 1)  # the last segment may be shorter
        return {
            "input_ids": self.rows[:, start:end].long(),
            "target_ids": self.rows[:, start + 1 : end + 1].long(),
            "segment_index": segment_index,
        }
