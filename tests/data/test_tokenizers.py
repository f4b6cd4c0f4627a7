"""On-the-fly tokenizers: the same vocabulary in any process, the merge order of a worked example, special tokens
where models expect them, text back out, save and reload."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, pipeline

from custom_models.nce_lm import NCELMForCausalLM
from custom_models.transfo_xl import TransformerXLForCausalLM
from data.tokenizers import EOS_TOKEN, learn_merges, train_tokenizer, word_level_tokenizer
from tests.tiny_models import nce_lm_config, transfo_xl_config

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["the quiet cat sees the dog", "the busy city by the sea", "a young king paints the ship"] * 5
# The shipped tiny configs' trainings: sentiment's WordPiece of 300 on its sample sentences, a BPE of 600 on the
# sample LM corpus.
SAMPLE_TRAININGS = {
    "wordpiece": ("data/samples/sentiment/train.tsv", 300),
    "bpe": ("data/samples/lm/train.txt", 600),
}


def sample_lines(path: str) -> list[str]:
    """The text of a sample file's lines (a .tsv's first column, below its header)."""
    lines = (REPO / path).read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in lines[1:]] if path.endswith(".tsv") else lines


_TRAIN_AND_SAVE = """
import sys
from tests.data.test_tokenizers import SAMPLE_TRAININGS, sample_lines
from data.tokenizers import train_tokenizer

for kind, (path, vocab_size) in SAMPLE_TRAININGS.items():
    train_tokenizer(sample_lines(path), kind=kind, vocab_size=vocab_size).save_pretrained(f"{sys.argv[1]}/{kind}")
"""


@pytest.fixture(scope="module")
def trained_in_two_processes(tmp_path_factory) -> list[Path]:
    """Folders of the sample trainings (`SAMPLE_TRAININGS`), saved by two fresh processes whose string hashes
    differ (PYTHONHASHSEED 1 and 2); the Rust trainers' hash maps are seeded afresh in every process anyway."""
    folders = []
    for seed in ("1", "2"):
        folder = tmp_path_factory.mktemp(f"hash-seed-{seed}")
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-c", _TRAIN_AND_SAVE, str(folder)], cwd=REPO, env=env, check=True, timeout=300)
        folders.append(folder)
    return folders


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(SAMPLE_TRAININGS))
def test_the_same_texts_give_a_byte_identical_tokenizer_in_another_process(kind, trained_in_two_processes):
    first, second = ((folder / kind / "tokenizer.json").read_bytes() for folder in trained_in_two_processes)
    assert first == second


def test_merges_go_by_count_then_by_the_pair_strings():
    # The worked example of `learn_merges`: after u+g (20), u+n (16), h+ug (15) and p+un (12), the pairs hug+s
    # and p+ug both count 5; ("hug", "s") sorts first. (The Rust trainer breaks ties by token id: p+ug first.)
    lines = ["hug"] * 10 + ["pug"] * 5 + ["pun"] * 12 + ["bun"] * 4 + ["hugs"] * 5
    expected = [["u", "g"], ["u", "n"], ["h", "ug"], ["p", "un"], ["hug", "s"], ["p", "ug"], ["b", "un"]]
    tokenizer = train_tokenizer(lines, kind="bpe", vocab_size=1000)
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    assert model["merges"] == expected  # then every word is one token: no pair left to merge
    assert len(tokenizer) == 1 + 256 + len(expected)  # <|endoftext|>, the byte alphabet, one token per merge
    assert [model["vocab"][left + right] for left, right in expected] == list(range(257, 264))

    # WordPiece: the same merges with ## on every symbol after a word's first, and its vocabulary in order.
    vocab, merges = learn_merges(
        {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}, vocab_size=1000, continuing_prefix="##"
    )
    assert merges == [
        ("##u", "##g"),
        ("##u", "##n"),
        ("h", "##ug"),
        ("p", "##un"),
        ("hug", "##s"),
        ("p", "##ug"),
        ("b", "##un"),
    ]
    assert list(vocab) == [
        *"bghnpsu", "##g", "##n", "##s", "##u", "##ug", "##un", "hug", "pun", "hugs", "pug", "bun"
    ]  # fmt: skip


@pytest.mark.parametrize("kind", sorted(SAMPLE_TRAININGS))
def test_the_vocabulary_reaches_the_requested_size_when_the_texts_allow(kind):
    # The samples allow 274 WordPiece tokens (sentiment) and 394 BPE tokens (LM corpus) at most.
    path, _ = SAMPLE_TRAININGS[kind]
    assert len(train_tokenizer(sample_lines(path), kind=kind, vocab_size=270)) == 270


def test_training_stops_short_of_the_size_only_when_every_word_is_one_token():
    lines = sample_lines("data/samples/sentiment/train.tsv")
    tokenizer = train_tokenizer(lines, kind="wordpiece", vocab_size=300)
    assert len(tokenizer) < 300  # the sample's words are fewer than the tokens it would take
    words = {word for line in lines for word in line.lower().split()}
    assert all(len(tokenizer.tokenize(word)) == 1 for word in words)


def test_wordpiece_wraps_text_in_cls_and_sep_and_pads_with_id_zero():
    tokenizer = train_tokenizer(TEXTS, kind="wordpiece", vocab_size=200)
    ids = tokenizer("the quiet sea")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.pad_token_id == 0
    assert tokenizer.decode(ids, skip_special_tokens=True) == "the quiet sea"


def test_wordpiece_lowercases_and_maps_unseen_characters_to_unk():
    tokenizer = train_tokenizer(TEXTS, kind="wordpiece", vocab_size=200)
    assert tokenizer.tokenize("The QUIET Sea") == ["the", "quiet", "sea"]
    # "z" and "!" never occur in TEXTS: no symbol spells them, so the whole word becomes [UNK].
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("the zebra sees the dog!")["input_ids"])
    assert tokens == ["[CLS]", "the", "[UNK]", "sees", "the", "dog", "[UNK]", "[SEP]"]


def test_byte_level_bpe_round_trips_unseen_text():
    tokenizer = train_tokenizer(TEXTS, kind="bpe", vocab_size=300)
    text = "Zebras? 42 ünïcode"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_byte_level_bpe_round_trips_its_training_text_exactly():
    lines = sample_lines("data/samples/lm/train.txt")
    tokenizer = train_tokenizer(lines, kind="bpe", vocab_size=600)
    text = "\n".join(lines[:200]) + "\n\t  two spaces, a tab, 😀 and CAPITALS  "
    ids = tokenizer(text)["input_ids"]
    assert len(ids) < len(text.encode()) / 2  # merges were learnt and used, not only bytes
    assert tokenizer.decode(ids) == text


def test_word_level_maps_unknown_words_to_unk_and_knows_eos(tmp_path):
    tokenizer = train_tokenizer(TEXTS, kind="word", vocab_size=100)
    ids = tokenizer(f"the cat flies {EOS_TOKEN}")["input_ids"]
    assert ids[2] == tokenizer.unk_token_id and ids[3] == tokenizer.eos_token_id
    tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)(f"the cat {EOS_TOKEN}")["input_ids"] == ids[:2] + ids[3:]


def test_word_level_ids_are_dense_when_the_corpus_contains_the_special_tokens():
    # WikiText has the literal word <unk>; every id must stay below len(tokenizer) (the embedding size).
    tokenizer = train_tokenizer(["the cat <unk> sat", f"the dog sat <unk> {EOS_TOKEN}"], kind="word", vocab_size=100)
    ids = sorted(tokenizer.get_vocab().values())
    assert ids == list(range(len(tokenizer)))
    assert tokenizer.unk_token_id == 0 and tokenizer.convert_tokens_to_ids(EOS_TOKEN) == 1
    assert max(tokenizer("the cat <unk> sat zebra")["input_ids"]) < len(tokenizer)


def test_word_level_vocab_size_caps_the_vocabulary():
    tokenizer = train_tokenizer([" ".join(f"w{i}" for i in range(50))], kind="word", vocab_size=10)
    assert len(tokenizer) == 10


def test_word_level_ids_go_by_count_then_alphabet_whatever_the_order_of_the_lines():
    lines = ["b a c a", "c b d", "e"]
    ids = [train_tokenizer(order, kind="word", vocab_size=10).get_vocab() for order in (lines, lines[::-1])]
    assert ids[0] == ids[1] == {"<unk>": 0, EOS_TOKEN: 1, "a": 2, "b": 3, "c": 4, "d": 5, "e": 6}


def test_word_level_tokenizer_ids_are_positions_and_decoding_keeps_every_word():
    words = ["<eos>", "the", "<unk>", ".", "do", "not", "##s", "Cat"]
    tokenizer = word_level_tokenizer(words)
    text = "the Cat do not ##s . zebra"
    ids = tokenizer(text)["input_ids"]
    assert ids == [1, 7, 4, 5, 6, 3, 2]  # positions in `words`; zebra -> <unk>; no <eos> added
    # One space before every word (the first too), no "##" gluing, no " ." -> "." cleanup.
    assert tokenizer.decode(ids) == " the Cat do not ##s . <unk>"
    assert word_level_tokenizer(words, lower_case=True)("THE cat")["input_ids"] == [1, 2]  # "cat" is not a word


@pytest.mark.parametrize(
    ("words", "message"),
    [(["<unk>", "a"], "no <eos>"), (["<eos>", "<unk>", "a", "a"], "repeats"), (["<eos>", "<unk>", "a b"], "'a b'")],
)
def test_word_level_tokenizer_rejects_vocabularies_whose_ids_would_not_be_positions(words, message):
    with pytest.raises(ValueError, match=message):
        word_level_tokenizer(words)


def tiny_word_level_lm(name: str, vocab_size: int, eos_token_id: int):
    torch.manual_seed(0)
    if name == "transfo_xl":
        return TransformerXLForCausalLM(transfo_xl_config(vocab_size=vocab_size, eos_token_id=eos_token_id)).eval()
    return NCELMForCausalLM(nce_lm_config(vocab_size=vocab_size, eos_token_id=eos_token_id)).eval()


@pytest.mark.parametrize("model_name", ["transfo_xl", "nce_lm"])
@pytest.mark.parametrize("return_full_text", [True, False])
def test_text_generation_pipeline_keeps_word_boundaries_with_a_word_level_tokenizer(model_name, return_full_text):
    # The pipeline decodes only the new tokens and appends them to the prompt string, so the continuation must
    # start with its own space: "the quiet" + " cat sees ...", not "the quiet" + "cat sees ..." -> "the quietcat".
    tokenizer = train_tokenizer(TEXTS, kind="word", vocab_size=100)
    model = tiny_word_level_lm(model_name, len(tokenizer), tokenizer.eos_token_id)
    prompt = "the quiet"
    generate = pipeline("text-generation", model=model, tokenizer=tokenizer)
    text = generate(prompt, max_new_tokens=6, do_sample=False, return_full_text=return_full_text)[0]["generated_text"]

    prompt_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    new_ids = model.generate(prompt_ids, max_new_tokens=6, do_sample=False)[0, prompt_ids.shape[1] :]
    words = [
        word for word in tokenizer.convert_ids_to_tokens(new_ids.tolist()) if word not in tokenizer.all_special_tokens
    ]
    assert len(words) >= 2  # the check below separates at least two generated words
    continuation = " " + " ".join(words)  # one space before each word, none doubled
    assert text == (prompt + continuation if return_full_text else continuation)
