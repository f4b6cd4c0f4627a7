"""Tokenizers trained on the fly, so tiny models built from a config run with no download.

Real runs load the checkpoint's own tokenizer (`AutoTokenizer.from_pretrained`); the offline quick start
and the tests train one of these on the training split instead. Each returns a `PreTrainedTokenizerFast`
that `save_pretrained` writes next to the model. The same texts give a byte-identical `tokenizer.json` in
any process: every vocabulary here is learnt by our own code, in an order fixed by counts and strings.

WordPiece and byte-level BPE share one merge learner (`learn_merges`): byte-pair encoding, Sennrich, Haddow
and Birch 2016, "Neural Machine Translation of Rare Words with Subword Units" (ACL). WordPiece (Schuster and
Nakajima 2012, "Japanese and Korean Voice Search", ICASSP; Wu et al. 2016, "Google's Neural Machine Translation
System", arXiv:1609.08144) picks each merge by the likelihood gain of a language model; like the Rust
`WordPieceTrainer` (a `BpeTrainer` with a `##` prefix), we pick it by count and keep WordPiece's encoding,
the longest vocabulary match from the left, `##` marking a piece that continues a word:

1. Words: each text through the tokenizer's own normalizer and pre-tokenizer (`normalize_str`,
   `pre_tokenize_str`), counted. Byte-level BPE words are already in GPT-2's byte alphabet (`Ġ` for a space).
2. Vocabulary: the special tokens, then the alphabet in code-point order (byte-level: all 256 byte symbols;
   WordPiece: every character seen), then WordPiece's continuing symbols `##c` for every character seen after a
   word's first one, in code-point order. Each word starts as its symbols (`hugs` -> `h ##u ##g ##s`).
3. Merges: the adjacent pair with the highest count (summed over words, times each word's count) becomes one
   symbol (`##u` + `##g` -> `##ug`, `h` + `##ug` -> `hug`), in every word at once, left to right; a tie goes
   to the pair whose (left, right) strings sort first. Repeated until the vocabulary has `vocab_size` tokens
   or every word is one symbol.

The Rust trainers of `tokenizers` learn the same way but break ties by token id, and give WordPiece's `##c`
symbols their ids in hash-map order, so the WordPiece vocabulary changed from process to process (`tokenizers`
issue 1794; byte-level BPE, whose first ids are sorted, did not). Here nothing depends on hash order or on the
order of the texts. Pair counts are kept up to date
incrementally (only the words holding the merged pair are rewritten) and the best pair comes from a heap whose
outdated entries are skipped when popped. CPU seconds, ours vs the Rust trainer's (Dec 2026, 2 cores shared
with other jobs): SST-2's 67,349 training sentences, WordPiece of 1,000: 1.8 vs 1.2; of 30,000 (20,831 reached,
every word whole): 2.2 vs 1.4; WikiText-2's training split (36,718 lines, 2M words), byte-level BPE of 8,000:
4.8 vs 2.4; of 30,000: 5.3 vs 2.5; that split 8 times (294k lines): 24 vs 17. Counting the words (one
`pre_tokenize_str` call per text) takes most of it; the Rust trainer also spreads it over every core.
"""

import heapq
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Literal

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

TokenizerKind = Literal["wordpiece", "bpe", "word"]

#: The end-of-line token of word-level corpora (WikiText and PTB add one per line).
EOS_TOKEN = "<eos>"
#: The unknown-word token of word-level corpora (WikiText also uses it as an ordinary word).
UNK_TOKEN = "<unk>"
#: WordPiece's prefix of a symbol that continues a word.
CONTINUING_PREFIX = "##"
#: Part of the key of a cached trained tokenizer (`data.token_cache.train_tokenizer_once`): raised whenever the
#: same texts would train another vocabulary, so that no run loads one an earlier trainer made. 2: our own merges.
TRAINER_VERSION = 2


def train_tokenizer(texts: Iterable[str], *, kind: TokenizerKind, vocab_size: int) -> PreTrainedTokenizerFast:
    """Trains a tokenizer of `kind` on `texts` (read once, never gathered into a list).

    - `wordpiece`: BERT-style, lowercased, `[CLS] text [SEP]`, `[PAD]` id 0.
    - `bpe`: GPT-2-style byte-level BPE with `<|endoftext|>` as its only special token (no unknown tokens).
    - `word`: whitespace words as in WikiText, `<unk>` for the rest and `<eos>` for line ends.

    Deterministic: the same texts give the same vocabulary, ids and merges in any process (see the module
    docstring). `vocab_size` counts the special tokens and the alphabet; it is reached unless the texts run out
    of pairs to merge (or of words, for `word`), and exceeded when the alphabet alone is larger.
    """
    if kind == "wordpiece":
        return _train_wordpiece(texts, vocab_size)
    if kind == "bpe":
        return _train_byte_level_bpe(texts, vocab_size)
    if kind == "word":
        return _train_word_level(texts, vocab_size)
    raise ValueError(f"kind must be 'wordpiece', 'bpe' or 'word', got {kind!r}")


def _train_wordpiece(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab, _ = learn_merges(
        _pre_token_counts(texts, normalizer, pre_tokenizer),
        vocab_size=vocab_size,
        special_tokens=special,
        continuing_prefix=CONTINUING_PREFIX,
    )
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix=CONTINUING_PREFIX))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.add_special_tokens(special)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece(prefix=CONTINUING_PREFIX)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _train_byte_level_bpe(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    end_of_text = "<|endoftext|>"
    pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    vocab, merges = learn_merges(
        _pre_token_counts(texts, None, pre_tokenizer),
        vocab_size=vocab_size,
        special_tokens=[end_of_text],
        alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer = Tokenizer(models.BPE(vocab, merges))
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([end_of_text])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=end_of_text, eos_token=end_of_text, unk_token=end_of_text
    )


def _pre_token_counts(
    texts: Iterable[str], normalizer: normalizers.Normalizer | None, pre_tokenizer: pre_tokenizers.PreTokenizer
) -> Counter:
    """How often each word occurs in `texts`, a word being a piece of `pre_tokenizer` after `normalizer`: the
    words a tokenizer with these two components sees, which its model must then spell."""
    counts: Counter = Counter()
    for text in texts:
        if normalizer is not None:
            text = normalizer.normalize_str(text)
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(text))
    return counts


def learn_merges(
    word_counts: Mapping[str, int],
    *,
    vocab_size: int,
    special_tokens: Iterable[str] = (),
    alphabet: Iterable[str] = (),
    continuing_prefix: str = "",
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-pair encoding of `word_counts` (see the module docstring): `(vocab, merges)`, the vocabulary as
    token -> id (special tokens, alphabet, continuing symbols, then one token per merge, in that order) and the
    merges as (left, right) pairs in the order learnt, ready for `models.BPE(vocab, merges)`.

    `alphabet`: symbols kept whether seen or not (byte-level BPE: all 256), beside every character seen.
    `continuing_prefix` (WordPiece: `##`): marks every symbol after a word's first, so that a token that starts a
    word and the same letters inside one are two tokens. Worked example, no prefix, counts hug 10, pug 5, pun 12,
    bun 4, hugs 5: u+g (20), u+n (16), h+ug (15), p+un (12); then hug+s and p+ug both count 5 and `("hug", "s")`
    sorts before `("p", "ug")`, so hugs comes first; then pug (5), bun (4); every word is then one token.
    """
    vocab: dict[str, int] = {}
    for token in special_tokens:
        vocab.setdefault(token, len(vocab))
    for token in sorted(set(alphabet).union(*word_counts)):
        vocab.setdefault(token, len(vocab))
    if continuing_prefix:
        continuing = set().union(*(word[1:] for word in word_counts))
        for char in sorted(continuing):
            vocab.setdefault(continuing_prefix + char, len(vocab))
    strings = list(vocab)  # id -> token

    # Each word as a list of ids, its count, and where each pair occurs (a superset: merges leave stale entries).
    words = [[vocab[word[0]], *(vocab[continuing_prefix + char] for char in word[1:])] for word in word_counts if word]
    counts = [count for word, count in word_counts.items() if word]
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for index, (word, count) in enumerate(zip(words, counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += count
            where[pair].add(index)
    # Max-heap by count, ties to the smaller (left, right) strings; an entry whose count is no longer the pair's
    # is outdated and skipped (every change of a count pushes a fresh entry).
    heap = [(-count, strings[left], strings[right], left, right) for (left, right), count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size and heap:
        negative_count, left_string, right_string, left, right = heapq.heappop(heap)
        if pair_counts.get((left, right)) != -negative_count:
            continue
        token = left_string + right_string[len(continuing_prefix) :]
        if token not in vocab:  # a token made before by another pair keeps its id, as in the Rust trainer
            vocab[token] = len(vocab)
            strings.append(token)
        merged_id = vocab[token]
        merges.append((left_string, right_string))
        changes: dict[tuple[int, int], int] = defaultdict(int)
        for index in where.pop((left, right)):
            word = words[index]
            new_word = _merge_pair(word, left, right, merged_id)
            if len(new_word) == len(word):  # a stale entry of `where`
                continue
            count = counts[index]
            for pair in zip(word, word[1:]):
                changes[pair] -= count
            for pair in zip(new_word, new_word[1:]):
                changes[pair] += count
                if merged_id in pair:
                    where[pair].add(index)
            words[index] = new_word
        for pair, change in changes.items():
            if change:
                count = pair_counts[pair] + change
                if count:
                    pair_counts[pair] = count
                    heapq.heappush(heap, (-count, strings[pair[0]], strings[pair[1]], *pair))
                else:
                    del pair_counts[pair]
    return vocab, merges


def _merge_pair(word: list[int], left: int, right: int, merged: int) -> list[int]:
    """`word` with each occurrence of `left right` replaced by `merged`, left to right (`a a a` -> `aa a`)."""
    new_word, i = [], 0
    while i < len(word):
        if word[i] == left and i + 1 < len(word) and word[i + 1] == right:
            new_word.append(merged)
            i += 2
        else:
            new_word.append(word[i])
            i += 1
    return new_word


def _train_word_level(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    # The most frequent words (ties alphabetical) after `<unk>` = 0 and `<eos>` = 1. Corpora such as WikiText contain
    # the literal word `<unk>`; it maps to the same id.
    counts = _count_words(texts)
    specials = [UNK_TOKEN, EOS_TOKEN]
    for special in specials:
        counts.pop(special, None)
    ranked = sorted(counts, key=lambda word: (-counts[word], word))
    return word_level_tokenizer(specials + ranked[: max(0, vocab_size - len(specials))])


def _count_words(texts: Iterable[str], *, lines_per_batch: int = 10_000) -> Counter:
    """Whitespace-word counts of `texts`, read a batch of lines at a time: a corpus of 100M words is never held,
    and each batch is split and counted in C (`Counter.update` on one joined string), ~5 s per 25M words."""
    counts, lines = Counter(), iter(texts)
    while batch := list(itertools.islice(lines, lines_per_batch)):
        counts.update(" ".join(batch).split())
    return counts


def word_level_tokenizer(words: list[str], *, lower_case: bool = False) -> PreTrainedTokenizerFast:
    """A whitespace word tokenizer whose ids are the positions in `words` (which must hold `<unk>` and `<eos>`).

    Shared by `train_tokenizer(kind="word")` and the Transformer-XL converter, which rebuilds a legacy
    vocabulary with exactly its old ids. Unknown words map to `<unk>` (an ordinary word of WikiText);
    `<eos>` is the eos token but is never added, since word-level corpora add it per line themselves.
    `lower_case` lowercases text before lookup, as the original Transformer-XL `Vocab(lower_case=True)`.
    `decode` puts one space before every word, the first included (`" the river ."`), so that decoded
    continuations keep their word boundary when appended to a prompt; `.lstrip()` a standalone text.
    """
    missing = [token for token in (UNK_TOKEN, EOS_TOKEN) if token not in words]
    if missing:
        raise ValueError(f"word_level_tokenizer: the vocabulary has no {' or '.join(missing)}")
    if len(set(words)) != len(words):
        raise ValueError("word_level_tokenizer: the vocabulary repeats a word, so ids would not be positions")
    unreachable = next((word for word in words if len(word.split()) != 1 or word != word.strip()), None)
    if unreachable is not None:
        raise ValueError(f"word_level_tokenizer: {unreachable!r} is empty or holds whitespace; no split yields it")
    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(words)}, unk_token=UNK_TOKEN))
    if lower_case:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Every word decodes with a space in front, the first one included: a text-generation pipeline decodes
    # only the new tokens and appends them to the prompt string, so a continuation must carry its own
    # leading space (as GPT-2's " word" tokens do). A decoder that spaces words apart but not the first one
    # glues prompt and continuation ("the" + "river" -> "theriver"). Decoding only: ids do not change.
    tokenizer.decoder = decoders.Replace(Regex("^"), " ")
    # No clean-up either: it would rewrite " ." as "." and " do not" as " don't".
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token=UNK_TOKEN, eos_token=EOS_TOKEN, clean_up_tokenization_spaces=False
    )
