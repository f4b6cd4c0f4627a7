"""Closed-book QA as causal language modelling: prompt -> answer + EOS, with the loss on the answer only.

One training example is `prompt_ids + answer_ids + [eos]`; its labels are -100 on the prompt and equal to
the input ids on the answer and EOS, so the model learns to answer and to stop, never to ask:

    prompt   "question: who wrote hamlet\\nanswer:"    -> labels -100 ... -100
    answer   " william shakespeare" <|endoftext|>       -> labels = their ids

The prompt and the answer are tokenised separately, and evaluation generates from exactly the same prompt
ids (`encode_prompts`), left-padded (`left_padded_prompts`) so every row's next token follows its prompt, and
cuts the answer out of what follows (`clean_answer`).
"""

from collections.abc import Sequence

import datasets
import torch
from transformers import PreTrainedTokenizerBase

from .arrow_cache import tokenize_once
from .labels import IGNORE_INDEX
from .loading import RowTexts

DEFAULT_PROMPT_TEMPLATE = "question: {question}\nanswer:"
#: Put between the prompt and the answer (and stripped from generated text): "answer:" + " paris".
ANSWER_PREFIX = " "
#: Tokenizer options for ids alone: the collators build the attention masks, so none is converted here.
IDS_ONLY = {"return_attention_mask": False, "return_token_type_ids": False}


def check_prompt_template(template: str) -> None:
    """Raises `ValueError` unless `template` has a `{question}` field and no other field."""
    if "{question}" not in template:
        raise ValueError(f"prompt_template must contain '{{question}}', got {template!r}")
    try:
        template.format(question="q")
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"prompt_template may only use the field {{question}}, got {template!r} ({error!r})") from None


def encode_prompts(
    questions: Sequence[str], tokenizer: PreTrainedTokenizerBase, *, template: str, max_length: int | None = None
) -> list[list[int]]:
    """Each question's prompt ids (with the tokenizer's own special tokens, e.g. a BOS), its last `max_length`
    kept; one tokenizer call for all of them (a call per question costs several times more per row).

    Truncating from the left keeps the end of the template ("answer:"), which the answer must follow.
    """
    ids = tokenizer([template.format(question=question) for question in questions], **IDS_ONLY)["input_ids"]
    return ids if max_length is None else [row[-max_length:] for row in ids]


def encode_answers(answers: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Each answer's token ids followed by EOS: what the model is trained to generate."""
    ids = tokenizer([ANSWER_PREFIX + answer for answer in answers], add_special_tokens=False, **IDS_ONLY)["input_ids"]
    eos = [tokenizer.eos_token_id]
    return [row + eos for row in ids]


def qa_training_examples(
    questions: Sequence[str],
    answers: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    *,
    template: str,
    max_seq_length: int,
) -> dict[str, list[list[int]]]:
    """Row i: `input_ids` = prompt of `questions[i]` + `answers[i]` + EOS, and `labels` with -100 over the
    prompt, at most `max_seq_length` long.

    The answer is kept whole when it fits (it is cut, EOS included, only if it alone exceeds
    `max_seq_length - 1`); the prompt gives up its first tokens.
    """
    examples = {"input_ids": [], "labels": []}
    prompts = encode_prompts(questions, tokenizer, template=template)
    for prompt, answer in zip(prompts, encode_answers(answers, tokenizer), strict=True):
        answer = answer[: max_seq_length - 1]
        prompt = prompt[-(max_seq_length - len(answer)) :]
        examples["input_ids"].append(prompt + answer)
        examples["labels"].append([IGNORE_INDEX] * len(prompt) + answer)
    return examples


def tokenize_qa_dataset(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    template: str,
    max_seq_length: int,
    all_answers: bool,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Maps `question` / `answers` rows to training examples: one per gold answer if `all_answers`, else the first;
    computed once per rows, tokenizer and settings (`data.arrow_cache.tokenize_once`)."""

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        pairs = [
            (question, answer)
            for question, answers in zip(batch["question"], batch["answers"], strict=True)
            for answer in (answers if all_answers else answers[:1])
        ]
        if not pairs:  # a tokenizer call on no text fails
            return {"input_ids": [], "labels": []}
        questions, answers = zip(*pairs, strict=True)
        return qa_training_examples(questions, answers, tokenizer, template=template, max_seq_length=max_seq_length)

    settings = {
        "task": "closed_book_qa",
        "template": template,
        "max_seq_length": max_seq_length,
        "all_answers": all_answers,
        "eos_token_id": tokenizer.eos_token_id,  # appended to every answer from Python
    }
    return tokenize_once(
        dataset,
        tokenize,
        tokenizer=tokenizer,
        settings=settings,
        remove_columns=dataset.column_names,
        num_proc=num_proc,
    )


def prompt_answer_texts(rows: datasets.Dataset, template: str) -> RowTexts:
    """The texts a QA tokenizer is trained on: each row's prompt followed by its answers
    (`"{prompt} {answer} {answer}"`), re-read from `rows` on every iteration."""
    return RowTexts(
        rows, ["question", "answers"], lambda q, answers: template.format(question=q) + " " + " ".join(answers)
    )


class QATrainingCollator:
    """Right-pads `input_ids` with `pad_token_id`, `labels` with -100, and builds the `attention_mask`.

    Labels are never derived from the padding: with `pad_token = eos` (GPT-2) the EOS that ends each answer
    has the pad id and must still be learned.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        batch = {"input_ids": [], "attention_mask": [], "labels": []}
        for f in features:
            padding = length - len(f["input_ids"])
            batch["input_ids"].append(f["input_ids"] + [self.pad_token_id] * padding)
            batch["attention_mask"].append([1] * len(f["input_ids"]) + [0] * padding)
            batch["labels"].append(f["labels"] + [IGNORE_INDEX] * padding)
        return {name: torch.tensor(rows, dtype=torch.long) for name, rows in batch.items()}


def left_padded_prompts(
    questions: Sequence[str], tokenizer: PreTrainedTokenizerBase, *, template: str, max_length: int
) -> dict[str, torch.Tensor]:
    """`input_ids` (b, prompt_len) and `attention_mask` for generation, padded on the left.

    Every row ends with its own prompt's last token, so `generate` continues each prompt directly.
    """
    prompts = encode_prompts(questions, tokenizer, template=template, max_length=max_length)
    length = max(len(p) for p in prompts)
    input_ids = [[tokenizer.pad_token_id] * (length - len(p)) + p for p in prompts]
    attention_mask = [[0] * (length - len(p)) + [1] * len(p) for p in prompts]
    return {"input_ids": torch.tensor(input_ids), "attention_mask": torch.tensor(attention_mask)}


def clean_answer(generated: str) -> str:
    """The answer in the text generated after a prompt: up to the first newline (the model may go on to ask
    the next question), without the `ANSWER_PREFIX` that training put before it."""
    return generated.split("\n", 1)[0].removeprefix(ANSWER_PREFIX).strip()
