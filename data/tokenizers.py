"""Tokenizers trained on the fly, so tiny models built from a config run with no download.

Real runs load the checkpoint's own tokenizer (`AutoTokenizer.from_pretrained`); the offline quick start
and the tests train one of these on the training split instead, deterministically, in well under a
second. Each returns a `PreTrainedTokenizerFast` that `save_pretrained` writes next to the model.
"""

import itertools
from collections import Counter
from collections.abc import Iterable
from typing import Literal

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

TokenizerKind = Literal["wordpiece", "bpe", "word"]

#: The end-of-line token of word-level corpora (WikiText and PTB add one per line).
EOS_TOKEN = "<eos>"
#: The unknown-word token of word-level corpora (WikiText also uses it as an ordinary word).
UNK_TOKEN = "<unk>"


def train_tokenizer(texts: Iterable[str], *, kind: TokenizerKind, vocab_size: int) -> PreTrainedTokenizerFast:
    """Trains a tokenizer of `kind` on `texts`.

    - `wordpiece`: BERT-style, lowercased, `[CLS] text [SEP]`, `[PAD]` id 0.
    - `bpe`: GPT-2-style byte-level BPE with `<|endoftext|>` as its only special token (no unknown tokens).
    - `word`: whitespace words as in WikiText, `<unk>` for the rest and `<eos>` for line ends; deterministic.

    WordPiece and BPE training is not reproducible across processes (ties are broken in hash order), which
    is why a resumed run reloads the tokenizer from its checkpoint (`recipes.common.load_or_train_tokenizer`).
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
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special))
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer.decoder = decoders.WordPiece()
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
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[end_of_text],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=end_of_text, eos_token=end_of_text, unk_token=end_of_text
    )


def _train_word_level(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    # Counted here rather than by the Rust trainer, whose tie order changes between processes: the most
    # frequent words (ties alphabetical) after `<unk>` = 0 and `<eos>` = 1. Corpora such as WikiText contain
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
