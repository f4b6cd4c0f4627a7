"""Closed-book QA as causal language modelling: prompt -> answer + its end, with the loss on the answer only.

One training example is `prompt_ids + answer_ids`, the answer ending with the token that stops generation; its
labels are -100 on the prompt and equal to the input ids on the answer and its end, so the model learns to answer
and to stop, never to ask. With `prompt_format template` (`TemplatePrompts`) the prompt is `prompt_template`
filled with the question and the answer ends with EOS:

    prompt   "question: who wrote hamlet\\nanswer:"    -> labels -100 ... -100
    answer   " william shakespeare" <|endoftext|>       -> labels = their ids

With `prompt_format chat` (`data.chat_prompts.ChatPrompts`) both come from the tokenizer's chat template.
Evaluation generates from exactly the same prompt ids (`QAPrompts.encode_prompts`), left-padded
(`left_padded_prompts`) so every row's next token follows its prompt, and cuts the answer out of what follows
(`QAPrompts.clean`).
"""

import abc
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


#: A conversation: `{"role", "content"}` turns.
Messages = list[dict[str, str]]


class QAPrompts(abc.ABC):
    """How questions become prompt ids, and answers the ids the model learns to generate after them; subclasses:
    `TemplatePrompts`, `data.chat_prompts.ChatPrompts`. `messages`: each row's conversation before the answer
    (`data.closed_book_qa`), None for a row that is a question alone (or for every row)."""

    #: Whether the tokenizer adds its own special tokens (a BOS) around a prompt text.
    add_special_tokens = True

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer

    @abc.abstractmethod
    def prompt_texts(
        self,
        questions: Sequence[str],
        messages: Sequence[Messages | None] | None = None,
        *,
        max_length: int | None = None,
    ) -> list[str]:
        """Each row's prompt as text; with `max_length`, shortened where a subclass can do better than cutting the
        prompt's ids on the left (`encode_prompts`), which the caller still does to what does not fit."""

    @abc.abstractmethod
    def pair_ids(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        messages: Sequence[Messages | None] | None = None,
        *,
        max_length: int | None = None,
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Each row's prompt ids and the ids of its answer up to the token that ends it; with `max_length`, prompts
        shortened as in `prompt_texts` to fit beside their answer (`qa_training_examples` cuts what still does not
        fit)."""

    @abc.abstractmethod
    def stop_ids(self) -> list[int]:
        """The tokens generation stops at."""

    @abc.abstractmethod
    def clean(self, generated: str) -> str:
        """The answer in the text generated after a prompt (decoded without special tokens)."""

    @abc.abstractmethod
    def cache_settings(self) -> dict:
        """What the training examples depend on besides the tokenizer's vocabulary, for cache keys."""

    def encode_prompts(self, texts: Sequence[str], *, max_length: int | None = None) -> list[list[int]]:
        """The ids of prompt `texts`, the last `max_length` of each kept; one tokenizer call for all of them (a
        call per prompt costs several times more per row). Truncating from the left keeps the end of the prompt
        ("answer:", the assistant's header), which the answer must follow."""
        ids = self.tokenizer(list(texts), add_special_tokens=self.add_special_tokens, **IDS_ONLY)["input_ids"]
        return ids if max_length is None else [row[-max_length:] for row in ids]


class TemplatePrompts(QAPrompts):
    """`prompt_format template`: `template` filled with the question (the tokenizer's own special tokens around
    it), then `ANSWER_PREFIX`, the answer and EOS; generation stops at EOS or a newline."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, template: str = DEFAULT_PROMPT_TEMPLATE) -> None:
        super().__init__(tokenizer)
        self.template = template

    def prompt_texts(
        self,
        questions: Sequence[str],
        messages: Sequence[Messages | None] | None = None,
        *,
        max_length: int | None = None,
    ) -> list[str]:
        """The filled template; a long one is cut on the left by the caller (it ends with the answer's cue)."""
        return [self.template.format(question=question) for question in questions]

    def pair_ids(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        messages: Sequence[Messages | None] | None = None,
        *,
        max_length: int | None = None,
    ) -> tuple[list[list[int]], list[list[int]]]:
        return self.encode_prompts(self.prompt_texts(questions)), encode_answers(answers, self.tokenizer)

    def stop_ids(self) -> list[int]:
        """EOS, and a newline token if the tokenizer has one."""
        stop_ids = [self.tokenizer.eos_token_id]
        newline = self.tokenizer("\n", add_special_tokens=False)["input_ids"]
        if len(newline) == 1 and newline[0] not in stop_ids:
            stop_ids.append(newline[0])
        return stop_ids

    def clean(self, generated: str) -> str:
        return clean_answer(generated)

    def cache_settings(self) -> dict:
        return {"template": self.template, "eos_token_id": self.tokenizer.eos_token_id}  # EOS: appended from Python


def encode_answers(answers: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Each answer's token ids followed by EOS: what the model is trained to generate."""
    ids = tokenizer([ANSWER_PREFIX + answer for answer in answers], add_special_tokens=False, **IDS_ONLY)["input_ids"]
    eos = [tokenizer.eos_token_id]
    return [row + eos for row in ids]


def qa_training_examples(
    questions: Sequence[str],
    answers: Sequence[str],
    prompts: QAPrompts,
    *,
    max_seq_length: int,
    messages: Sequence[Messages | None] | None = None,
) -> dict[str, list[list[int]]]:
    """Row i: `input_ids` = prompt of `questions[i]` (`messages[i]`) + `answers[i]` + its end (`prompts.pair_ids`),
    and `labels` with -100 over the prompt, at most `max_seq_length` long.

    The answer is kept whole when it fits (it is cut, its end included, only if it alone exceeds
    `max_seq_length - 1`); the prompt is shortened by `prompts` (a chat prompt drops its oldest turns) and then
    gives up its first tokens.
    """
    examples = {"input_ids": [], "labels": []}
    pairs = prompts.pair_ids(questions, answers, messages, max_length=max_seq_length)
    for prompt, answer in zip(*pairs, strict=True):
        answer = answer[: max_seq_length - 1]
        prompt = prompt[-(max_seq_length - len(answer)) :]
        examples["input_ids"].append(prompt + answer)
        examples["labels"].append([IGNORE_INDEX] * len(prompt) + answer)
    return examples


def tokenize_qa_dataset(
    dataset: datasets.Dataset,
    prompts: QAPrompts,
    *,
    max_seq_length: int,
    all_answers: bool,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Maps `question` / `answers` (/ `messages`) rows to training examples: one per gold answer if `all_answers`,
    else the first; computed once per rows, tokenizer and settings (`data.arrow_cache.tokenize_once`)."""

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        conversations = batch.get("messages") or [None] * len(batch["question"])
        rows = [
            (question, answer, conversation)
            for question, answers, conversation in zip(batch["question"], batch["answers"], conversations, strict=True)
            for answer in (answers if all_answers else answers[:1])
        ]
        if not rows:  # a tokenizer call on no text fails
            return {"input_ids": [], "labels": []}
        questions, answers, messages = zip(*rows, strict=True)
        return qa_training_examples(questions, answers, prompts, max_seq_length=max_seq_length, messages=messages)

    settings = {
        "task": "closed_book_qa",
        "max_seq_length": max_seq_length,
        "all_answers": all_answers,
        **prompts.cache_settings(),
    }
    return tokenize_once(
        dataset,
        tokenize,
        tokenizer=prompts.tokenizer,
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


class PaddingFreeCollator:
    """Concatenates a batch's rows into one row without padding: `input_ids` and `labels` one after the other,
    `position_ids` restarting at 0 at each row, no `attention_mask`. A causal LM of transformers 5.x reads restarted
    positions as separate sequences (`masking_utils.find_packed_sequence_indices`: the mask is block-causal), so
    each row attends to itself only and the loss is the padded batch's, without the padding's compute. The first
    label of every row is `IGNORE_INDEX`: shifted inside the model, it would be predicted from the previous row. The
    batch asks for no cache (`use_cache` false): transformers looks for packed rows only when there is none.
    Whether a model keeps the rows apart is checked on the model (`recipes/closed_book_qa/padding_free.py`)."""

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        batch: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
        for f in features:
            batch["input_ids"] += f["input_ids"]
            batch["labels"] += [IGNORE_INDEX, *f["labels"][1:]]
            batch["position_ids"] += range(len(f["input_ids"]))
        return {name: torch.tensor([row], dtype=torch.long) for name, row in batch.items()} | {"use_cache": False}


def left_padded_prompts(prompts: Sequence[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """`input_ids` (b, prompt_len) and `attention_mask` for generation: `prompts` (ids) padded on the left.

    Every row ends with its own prompt's last token, so `generate` continues each prompt directly.
    """
    length = max(len(p) for p in prompts)
    input_ids = [[pad_token_id] * (length - len(p)) + p for p in prompts]
    attention_mask = [[0] * (length - len(p)) + [1] * len(p) for p in prompts]
    return {"input_ids": torch.tensor(input_ids), "attention_mask": torch.tensor(attention_mask)}


def clean_answer(generated: str) -> str:
    """The answer in the text generated after a prompt: up to the first newline (the model may go on to ask
    the next question), without the `ANSWER_PREFIX` that training put before it."""
    return generated.split("\n", 1)[0].removeprefix(ANSWER_PREFIX).strip()
