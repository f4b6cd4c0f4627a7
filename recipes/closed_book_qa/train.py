"""Closed-book QA: fine-tune a causal LM (GPT-2 by default) to answer questions from its parameters alone.

    accelerate launch recipes/closed_book_qa/train.py recipes/closed_book_qa/configs/tiny.yaml

Each example is the question in the tokenizer's chat template with the answer as the assistant's turn
(`prompt_format chat`), or `prompt_template` filled with the question, then the answer and EOS (`template`); the
loss covers only the answer and the token that ends it, so the model learns to answer, not to write questions.
`Trainer` has no generation-based evaluation for decoder-only models, so this recipe's evaluation generates from
left-padded prompts and scores SQuAD-normalised exact match and token F1 against every gold answer, each question
once on any number of processes. Flags, modes and files: README.md, "Closed-book QA: a causal LM answering from
its parameters".
"""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerBase, TrainingArguments

from data.chat_prompts import ChatPrompts
from data.closed_book_qa import has_context_turns, load_qa_dataset
from data.qa_features import (
    DEFAULT_PROMPT_TEMPLATE,
    QAPrompts,
    TemplatePrompts,
    check_prompt_template,
    prompt_answer_texts,
    tokenize_qa_dataset,
)
from recipes.closed_book_qa.answer_loss import QATrainer
from recipes.closed_book_qa.generation_eval import GenerationEvalTrainer, prompt_length_that_fits
from recipes.closed_book_qa.padding_free import training_collator
from recipes.kit.adapters import add_lora_adapters
from recipes.kit.arguments import DataArguments, LoraArguments, ModelArguments, RecipeTrainingArguments
from recipes.kit.command_line import run_from_command_line
from recipes.kit.data_steps import describe_data, load_task_splits, load_tokenizer
from recipes.kit.errors import ConfigError
from recipes.kit.generation import GenerationArguments
from recipes.kit.model_loading import load_model
from recipes.kit.run_steps import evaluate_splits, save_card_and_push, start_run, train

logger = logging.getLogger(__name__)

#: The modules that get LoRA adapters by default, per `model_type` (GPT-2's fused attention input); any other
#: model: every linear layer but the output layer (PEFT's `all-linear`).
LORA_TARGETS = {"gpt2": ["c_attn"], "nce-gpt2": ["c_attn"]}
PROMPT_FORMATS = ("auto", "chat", "template")


@dataclass
class QAModelArguments(ModelArguments):
    """The causal LM: any checkpoint (GPT-2 by default), or a new GPT-2."""

    config_class = AutoConfig  # a checkpoint may be any causal LM; a new model is a GPT-2
    new_config_class = GPT2Config

    model_name_or_path: str | None = field(default="gpt2", metadata={"help": "Hub id or folder; null: a new GPT-2."})
    tokenizer_vocab_size: int = field(default=1000, metadata={"help": "Vocabulary of a BPE tokenizer trained here."})
    answer_only_loss: bool = field(
        default=True, metadata={"help": "Run the output layer on the answer positions only (same loss, faster)."}
    )


@dataclass
class QADataArguments(DataArguments):
    """Questions with their gold answers (NQ-Open by default), and the prompt that asks them."""

    dataset_name: str | None = field(
        default="google-research-datasets/nq_open", metadata={"help": "Hub data set (local files win)."}
    )
    question_column: str = field(default="question", metadata={"help": "Column holding the question."})
    answer_column: str = field(default="answer", metadata={"help": "Column holding the answer(s)."})
    prompt_format: str = field(
        default="auto", metadata={"help": "chat, template, or auto: chat when the tokenizer has a chat template."}
    )
    chat_template: str | None = field(
        default=None, metadata={"help": "A Jinja chat template, or a file holding one; default: the tokenizer's."}
    )
    system_prompt: str | None = field(default=None, metadata={"help": "chat: the system turn of every question."})
    prompt_template: str = field(
        default=DEFAULT_PROMPT_TEMPLATE, metadata={"help": "template: a {question} field; the answer follows."}
    )
    train_on_all_answers: bool = field(default=False, metadata={"help": "One example per gold answer, not the first."})
    max_seq_length: int = field(
        default=64,
        metadata={
            "help": "Prompt + answer + EOS tokens; prompts shortened (chat: oldest turns first), then cut on the left."
        },
    )
    padding_free: bool | None = field(
        default=None,
        metadata={
            "help": "Training rows concatenated, position_ids restarting at each row, no padding (same loss). null: "
            "where the model keeps packed rows apart (checked on it), else padded; true: refuse a model that does not."
        },
    )

    def __post_init__(self) -> None:
        check_prompt_template(self.prompt_template)
        if self.prompt_format not in PROMPT_FORMATS:
            raise ConfigError(f"prompt_format must be one of {list(PROMPT_FORMATS)}, got {self.prompt_format!r}")
        for name in ("chat_template", "system_prompt"):
            if getattr(self, name) and self.prompt_format == "template":
                raise ConfigError(f"{name} is for chat prompts: drop it, or set prompt_format chat (or auto)")
        if self.max_seq_length < 2:  # one prompt token and the answer's first at least
            raise ConfigError(f"max_seq_length must be at least 2, got {self.max_seq_length}")
        if not (self.dataset_name or self.dataset_mixture or self.train_file or self.validation_file or self.test_file):
            raise ConfigError(
                "give dataset_name, dataset_mixture or local files (train_file, validation_file, test_file)"
            )
        super().__post_init__()


CONFIG_CLASSES = (QAModelArguments, QADataArguments, LoraArguments, GenerationArguments, RecipeTrainingArguments)


def main(
    model_args: QAModelArguments,
    data_args: QADataArguments,
    lora_args: LoraArguments,
    generation_args: GenerationArguments,
    training_args: TrainingArguments,
) -> dict[str, float]:
    # Run
    start_run(model_args, training_args)
    # Data
    columns = {"question_column": data_args.question_column, "answer_column": data_args.answer_column}
    raw = load_task_splits(load_qa_dataset, data_args, training_args, **columns)
    # Tokenizer
    # (the checkpoint's own, or byte-level BPE trained on the training prompts and answers)
    texts = prompt_answer_texts(raw["train"], data_args.prompt_template) if training_args.do_train else ()
    tokenizer = prepare_for_generation(load_tokenizer(model_args, training_args, texts, kind="bpe"), data_args)
    prompts = qa_prompts(tokenizer, data_args)
    train_dataset = tokenize_training_split(raw, prompts, data_args, training_args)
    # Model
    # (pretrained, or GPT-2 from a config sized to the tokenizer)
    special = {name: getattr(tokenizer, name) for name in ("bos_token_id", "eos_token_id", "pad_token_id")}
    model = load_model(
        AutoModelForCausalLM,
        model_args,
        training_args,
        new_model_fields={"vocab_size": len(tokenizer), **special},
        lengths={"max_seq_length": data_args.max_seq_length},
    )
    model.generation_config = generation_args.generation_config(tokenizer, eos_token_id=prompts.stop_ids())
    targets = LORA_TARGETS.get(model.config.model_type, "all-linear")
    model = add_lora_adapters(model, lora_args, training_args, task_type="CAUSAL_LM", default_targets=targets)
    # Trainer
    trainer_class = QATrainer if model_args.answer_only_loss else GenerationEvalTrainer
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=raw.get("validation"),
        data_collator=training_collator(
            model, tokenizer.pad_token_id, padding_free=data_args.padding_free, do_train=training_args.do_train
        ),
        processing_class=tokenizer,
        prompts=prompts,
        max_prompt_length=prompt_length_that_fits(
            model.config, max_seq_length=data_args.max_seq_length, max_new_tokens=generation_args.max_new_tokens
        ),
        generation_config=model.generation_config,
    )
    # Train
    if training_args.do_train:
        train(trainer)
    # Evaluate
    metrics = evaluate_splits(trainer, {"eval": raw["validation"]}) if training_args.do_eval else {}
    # Predict
    if training_args.do_predict:
        metrics |= predict_answers(trainer, raw["test"])
    # Save, card, push
    if training_args.do_train:
        save_card_and_push(
            trainer,
            title="Closed-book QA",
            data=f"{describe_data(data_args)}: {len(raw['train'])} training questions",
            metrics={k: v for k, v in metrics.items() if k in ("eval_exact_match", "eval_f1")},
            notes=f"A causal LM that answers {describe_prompts(data_args)}; evaluated by generation.",
            arguments=(model_args, data_args, lora_args, generation_args, training_args),
        )
    return metrics


def prepare_for_generation(tokenizer: PreTrainedTokenizerBase, data_args: QADataArguments) -> PreTrainedTokenizerBase:
    """`tokenizer` padding on the left, for generation here and in the pipeline of the saved folder, with EOS as
    its padding token when it has none (GPT-2), and `chat_template` (a file's text) as its chat template when
    given (saved with it)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    template = data_args.chat_template
    if template:
        tokenizer.chat_template = Path(template).read_text(encoding="utf-8") if os.path.isfile(template) else template
    return tokenizer


def qa_prompts(tokenizer: PreTrainedTokenizerBase, data_args: QADataArguments) -> QAPrompts:
    """The run's prompt format: `prompt_format`, `auto` resolved once (chat when the tokenizer has a chat
    template), logged and written back into `data_args`, so that the card's resolved configuration names it.

    Raises:
        ConfigError: chat prompts without a chat template, or with one that refuses the conversation or whose
            assistant turn has no end token (`data.chat_prompts.ChatPrompts`).
    """
    if data_args.prompt_format == "auto":
        data_args.prompt_format = "chat" if tokenizer.chat_template else "template"
    logger.info("prompt_format: %s", data_args.prompt_format)
    if data_args.prompt_format == "template":
        return TemplatePrompts(tokenizer, data_args.prompt_template)
    if not tokenizer.chat_template:
        raise ConfigError("prompt_format chat: the tokenizer has no chat template; give chat_template, or use template")
    name = f"chat_template {data_args.chat_template!r}" if data_args.chat_template else ""
    try:
        return ChatPrompts(tokenizer, system_prompt=data_args.system_prompt, template_name=name)
    except ValueError as error:
        raise ConfigError(f"prompt_format chat: {error}") from None


def describe_prompts(data_args: QADataArguments) -> str:
    """The prompts of the run in words, for the card."""
    if data_args.prompt_format == "template":
        return f"`{data_args.prompt_template!r}` prompts"
    system = f" (system prompt `{data_args.system_prompt!r}`)" if data_args.system_prompt else ""
    return f"questions in its chat template{system}, the answer as the assistant's turn"


def tokenize_training_split(
    raw: datasets.DatasetDict,
    prompts: QAPrompts,
    data_args: QADataArguments,
    training_args: TrainingArguments,
) -> datasets.Dataset | None:
    """The training examples (`data.qa_features.tokenize_qa_dataset`: prompt, answer, its end; one per question, or
    per gold answer), tokenised once per machine by the local main process first; None without `do_train`. Template
    prompts hold a conversation's last user turn alone: a warning says so when the rows have other turns."""
    if not training_args.do_train:
        return None
    if isinstance(prompts, TemplatePrompts) and has_context_turns(raw["train"]):
        logger.warning("prompt_format template: the system and earlier turns of the conversations are not prompted")
    with training_args.main_process_first(desc="tokenizing"):
        train_dataset = tokenize_qa_dataset(
            raw["train"],
            prompts,
            max_seq_length=data_args.max_seq_length,
            all_answers=data_args.train_on_all_answers,
            num_proc=data_args.preprocessing_num_workers,
        )
    logger.info("train: %d examples from %d questions", len(train_dataset), len(raw["train"]))
    return train_dataset


def predict_answers(trainer: GenerationEvalTrainer, test: datasets.Dataset) -> dict[str, float]:
    """The `do_predict` step: answers the test questions (`predictions.jsonl`); when they have gold answers, their
    exact match and F1, written as `predict_results.json` and returned (else nothing is returned)."""
    predict_metrics = trainer.evaluate(test, metric_key_prefix="predict")
    if "answers" not in test.column_names:
        return {}
    trainer.save_metrics("predict", predict_metrics)
    return predict_metrics


if __name__ == "__main__":
    run_from_command_line(main, CONFIG_CLASSES)
