"""A validation split carved from the training data, when a run evaluates but has no validation data; and which of
a data set's splits are its validation splits (`validation_split_names`).

Rows (sentiment, QA): a seeded sample of `percentage`% of the training rows, disjoint from the rows kept for
training. The sample depends on the seed and the row count only (numpy's PCG64 generator), so every process
of a run computes the same split without talking to the others.

Token streams (language models): the last `percentage`% of the training stream, contiguous, since order
matters for models that read the corpus as one sequence (Transformer-XL).

Sizes, in both cases: the validation part is `floor(n * percentage / 100)` of the `n` rows or tokens, the
training part the rest; e.g. 1,000 rows at 10%: 100 validation rows, 900 training rows.
"""

import logging
from collections.abc import Iterable

import datasets
import numpy as np
import torch

from .errors import DataError

logger = logging.getLogger(__name__)


def validation_split_names(names: Iterable[str]) -> list[str]:
    """The validation splits among the split `names`: `["validation"]` when there is one, else every
    `validation_<name>` in order of name (a Hub layout such as MNLI's `validation_matched` and
    `validation_mismatched`, each evaluated on its own); `[]` when there is none."""
    names = list(names)
    return ["validation"] if "validation" in names else sorted(n for n in names if n.startswith("validation_"))


def validation_size(total: int, percentage: int, *, unit: str) -> int:
    """`floor(total * percentage / 100)`; `DataError` when that leaves no validation `unit` (too little data)."""
    size = total * percentage // 100
    if size == 0:
        raise DataError(
            f"validation_split_percentage {percentage}: {percentage}% of {total} training {unit} is none; "
            "give a validation file or more training data"
        )
    return size


def carve_validation_rows(
    train: datasets.Dataset, *, percentage: int, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """`(train, validation)`: `percentage`% of the rows of `train`, drawn with `seed`, become the validation
    split, the rest stay for training; both keep the rows' original order."""
    size = validation_size(len(train), percentage, unit="rows")
    held_out = np.zeros(len(train), dtype=bool)
    held_out[np.random.default_rng(seed).permutation(len(train))[:size]] = True
    kept, validation = train.select(np.flatnonzero(~held_out)), train.select(np.flatnonzero(held_out))
    logger.info(
        "validation_split_percentage %d: %d training rows, %d validation rows (seed %d)",
        percentage,
        len(kept),
        len(validation),
        seed,
    )
    return kept, validation


def carve_validation_tokens(stream: torch.Tensor, *, percentage: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(train, validation)`: the first and the last part of the token `stream`, the last holding `percentage`%
    of its tokens. Views, not copies (the stream may be memory-mapped)."""
    size = validation_size(stream.numel(), percentage, unit="tokens")
    train, validation = stream[: stream.numel() - size], stream[stream.numel() - size :]
    logger.info(
        "validation_split_percentage %d: %d training tokens, the last %d tokens for validation",
        percentage,
        train.numel(),
        validation.numel(),
    )
    return train, validation
