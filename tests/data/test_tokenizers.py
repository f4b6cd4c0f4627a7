"""On-the-fly tokenizers: special tokens where models expect them, text back out, save and reload."""

import pytest
import torch
from transformers import AutoTokenizer, pipeline

from custom_models.nce_lm import NCELMForCausalLM
from custom_models.transfo_xl import TransformerXLForCausalLM
from data.tokenizers import EOS_TOKEN, train_tokenizer, word_level_tokenizer
from tests.tiny_models import nce_lm_config, transfo_xl_config

TEXTS = ["the quiet cat sees the dog", "the busy city by the sea", "a young king paints the ship"] * 5


def test_wordpiece_wraps_text_in_cls_and_sep_and_pads_with_id_zero():
    tokenizer = train_tokenizer(TEXTS, kind="wordpiece", vocab_size=200)
    ids = tokenizer("the quiet sea")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.pad_token_id == 0
    assert tokenizer.decode(ids, skip_special_tokens=True) == "the quiet sea"


def test_byte_level_bpe_round_trips_unseen_text():
    tokenizer = train_tokenizer(TEXTS, kind="bpe", vocab_size=300)
    text = "Zebras? 42 ünïcode"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


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
