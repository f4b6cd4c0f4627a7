"""Closed-book QA features: the loss covers answer + EOS only; generation prompts are left-padded; the answer is
cut out of generated text."""

import json
from pathlib import Path

import datasets
import pytest

from data.closed_book_qa import load_qa_dataset
from data.qa_features import (
    DEFAULT_PROMPT_TEMPLATE,
    QATrainingCollator,
    TemplatePrompts,
    check_prompt_template,
    clean_answer,
    encode_answers,
    left_padded_prompts,
    prompt_answer_texts,
    qa_training_examples,
    tokenize_qa_dataset,
)
from data.tokenizers import train_tokenizer

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples" / "closed_book_qa"


@pytest.fixture(scope="module")
def tokenizer():
    rows = [json.loads(line) for line in (SAMPLES / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = [DEFAULT_PROMPT_TEMPLATE.format(question=r["question"]) + " " + " ".join(r["answer"]) for r in rows]
    tok = train_tokenizer(texts, kind="bpe", vocab_size=400)
    tok.pad_token = tok.eos_token  # as in the recipe (GPT-2 has no pad token): pad id == EOS id
    return tok


def test_tokenizer_texts_are_each_prompt_and_its_answers_on_every_iteration():
    rows = load_qa_dataset(train_file=str(SAMPLES / "train.jsonl"), answer_column="answer")["train"]
    texts = prompt_answer_texts(rows, DEFAULT_PROMPT_TEMPLATE)
    first = list(texts)
    assert first[2] == "question: what is 2 plus 1\nanswer: 3 three"  # every gold answer
    assert len(first) == len(rows) and list(texts) == first  # read again, the same texts


def one_example(question: str, answer: str, tokenizer, *, max_seq_length: int) -> dict[str, list[int]]:
    """The training example of one question and answer, through the batched `qa_training_examples`."""
    batch = qa_training_examples([question], [answer], TemplatePrompts(tokenizer), max_seq_length=max_seq_length)
    return {name: rows[0] for name, rows in batch.items()}


def test_labels_are_exactly_the_answer_and_eos(tokenizer):
    question, answer = "what is the capital of poland", "warsaw"
    example = one_example(question, answer, tokenizer, max_seq_length=64)
    prompt_ids = tokenizer("question: what is the capital of poland\nanswer:")["input_ids"]
    answer_ids = tokenizer(" warsaw", add_special_tokens=False)["input_ids"]
    assert example["input_ids"] == prompt_ids + answer_ids + [tokenizer.eos_token_id]
    assert example["labels"] == [-100] * len(prompt_ids) + answer_ids + [tokenizer.eos_token_id]
    labelled = [t for t in example["labels"] if t != -100]
    assert tokenizer.decode(labelled) == " warsaw<|endoftext|>"


def test_padding_carries_no_labels_but_the_final_eos_does(tokenizer):
    questions, answers = ["what is 2 plus 1", "what is the capital of the united kingdom"], ["3", "london"]
    batch = qa_training_examples(questions, answers, TemplatePrompts(tokenizer), max_seq_length=64)
    examples = [dict(zip(batch, row, strict=True)) for row in zip(*batch.values(), strict=True)]
    assert examples == [one_example(q, a, tokenizer, max_seq_length=64) for q, a in zip(questions, answers)]
    batch = QATrainingCollator(tokenizer.pad_token_id)(examples)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == example["input_ids"]  # right padding
        assert batch["labels"][row, :n].tolist() == example["labels"]
        assert batch["labels"][row, n - 1] == tokenizer.eos_token_id  # EOS is learned although it is the pad id
        assert (batch["labels"][row, n:] == -100).all() and (batch["attention_mask"][row, n:] == 0).all()
        assert (batch["attention_mask"][row, :n] == 1).all()


def test_all_answers_gives_one_example_per_gold_answer(tokenizer):
    rows = datasets.Dataset.from_list([{"question": "what is 2 plus 1", "answers": ["3", "three"]}])
    prompts = TemplatePrompts(tokenizer, DEFAULT_PROMPT_TEMPLATE)
    first = tokenize_qa_dataset(rows, prompts, all_answers=False, max_seq_length=64)
    every = tokenize_qa_dataset(rows, prompts, all_answers=True, max_seq_length=64)
    answers = [tokenizer.decode([t for t in row if t != -100], skip_special_tokens=True) for row in every["labels"]]
    assert len(first) == 1 and answers == [" 3", " three"]


def test_truncation_keeps_the_answer_and_the_end_of_the_prompt(tokenizer):
    question = "what is the capital of " + "very " * 40 + "poland"
    example = one_example(question, "warsaw", tokenizer, max_seq_length=16)
    assert len(example["input_ids"]) == 16
    prompt = [t for t, label in zip(example["input_ids"], example["labels"]) if label == -100]
    assert tokenizer.decode(prompt).endswith("poland\nanswer:")
    assert tokenizer.decode([t for t in example["labels"] if t != -100]) == " warsaw<|endoftext|>"


def test_generation_batch_is_left_padded_and_ends_with_each_prompt(tokenizer):
    questions = ["what is 2 plus 1", "what is the capital of the united kingdom"]
    prompts = TemplatePrompts(tokenizer, DEFAULT_PROMPT_TEMPLATE)
    batch = left_padded_prompts(prompts.encode_prompts(prompts.prompt_texts(questions)), tokenizer.pad_token_id)
    for row, question in enumerate(questions):
        prompt_ids = tokenizer(DEFAULT_PROMPT_TEMPLATE.format(question=question))["input_ids"]
        padding = batch["input_ids"].shape[1] - len(prompt_ids)
        assert batch["input_ids"][row, padding:].tolist() == prompt_ids
        assert batch["attention_mask"][row].tolist() == [0] * padding + [1] * len(prompt_ids)
    assert batch["attention_mask"][0, 0] == 0  # the shorter prompt really is padded on the left


def test_generated_text_is_cut_at_the_first_newline():
    assert clean_answer(" warsaw\nquestion: what is") == "warsaw"
    assert clean_answer(" william shakespeare") == "william shakespeare"


def test_clean_answer_undoes_the_answer_encoding(tokenizer):
    generated = tokenizer.decode(encode_answers(["william shakespeare"], tokenizer)[0], skip_special_tokens=True)
    assert generated == " william shakespeare"  # the prefix and EOS training added
    assert clean_answer(generated) == "william shakespeare"


@pytest.mark.parametrize("template", ["question {q}\nanswer:", "no field", "{question} {other}", "{question} {}"])
def test_prompt_template_needs_exactly_the_question_field(template):
    with pytest.raises(ValueError, match="prompt_template"):
        check_prompt_template(template)
