"""A synthetic corpus whose tokens can only be predicted from far back: a seconds-long test of memory.

Each document reads `<copy> x1 ... xn <repeat> x1 ... xn`, with x drawn uniformly from `num_symbols`
symbols. The first half is pure chance; every token of the second half repeats the token exactly
`span_length + 1` positions earlier. With training segments shorter than that, only a model that
carries memory across segments (Transformer-XL with `mem_len > span_length`) can predict the second
half, so its loss falls towards half that of a memory-less model (about `ln(num_symbols) / 2` per
token against `ln(num_symbols)`). Every repeated token is a training signal, so the difference shows
after a few hundred steps on a CPU.
"""

import random

COPY_MARKER, REPEAT_MARKER = "<copy>", "<repeat>"


def long_range_documents(
    *, num_documents: int, num_symbols: int = 16, span_length: int = 12, seed: int = 0
) -> list[str]:
    """`num_documents` whitespace-tokenised lines in the layout above, deterministic given `seed`."""
    if num_documents < 1 or num_symbols < 2 or span_length < 1:
        raise ValueError(
            f"need num_documents >= 1, num_symbols >= 2, span_length >= 1; got {num_documents}, {num_symbols}, "
            f"{span_length}"
        )
    rng = random.Random(seed)
    documents = []
    for _ in range(num_documents):
        span = " ".join(f"s{rng.randrange(num_symbols)}" for _ in range(span_length))
        documents.append(f"{COPY_MARKER} {span} {REPEAT_MARKER} {span}")
    return documents
