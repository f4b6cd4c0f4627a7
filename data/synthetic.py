"""A synthetic corpus whose tokens can only be predicted from far back: a seconds-long test of memory.

Each document reads `<key> K f0 f1 ... f(n-1) <recall> K <end>`. Every token is predictable from the one
before it except the two keys `K` (drawn uniformly from `num_keys`): the first is pure chance, the
second repeats the first, `filler_length + 2` tokens earlier. With segments shorter than that, only a
model that carries memory across segments (Transformer-XL with `mem_len > 0`) can predict it, so
its loss falls towards `ln(num_keys) / document_length` per token while a memory-less model stays
near twice that.
"""

import random

KEY_MARKER, RECALL_MARKER, END_MARKER = "<key>", "<recall>", "<end>"


def long_range_documents(
    *, num_documents: int, num_keys: int = 16, filler_length: int = 40, seed: int = 0
) -> list[str]:
    """`num_documents` whitespace-tokenised lines in the layout above, deterministic given `seed`."""
    if num_documents < 1 or num_keys < 2 or filler_length < 1:
        raise ValueError(
            f"need num_documents >= 1, num_keys >= 2, filler_length >= 1; got {num_documents}, {num_keys}, "
            f"{filler_length}"
        )
    rng = random.Random(seed)
    filler = " ".join(f"f{i}" for i in range(filler_length))
    documents = []
    for _ in range(num_documents):
        key = f"k{rng.randrange(num_keys)}"
        documents.append(f"{KEY_MARKER} {key} {filler} {RECALL_MARKER} {key} {END_MARKER}")
    return documents
