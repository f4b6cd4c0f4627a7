"""Closed-book QA: fine-tune a causal LM (GPT-2 by default) to answer questions from its parameters alone.

    accelerate launch recipes/closed_book_qa/train.py recipes/closed_book_qa/configs/tiny.yaml

Each example is `prompt_template` filled with the question, then the answer and EOS; the loss covers only the
answer and EOS, so the model learns to answer, not to write questions. `Trainer` has no generation-based
evaluation for decoder-only models, so this recipe's evaluation generates from left-padded prompts and scores
SQuAD-normalised exact match and token F1 against every gold answer, each question once on any number of
processes. Flags, modes and files: README.md, "Closed-book QA: a causal LM answering from its parameters".
"""

import logging
from dataclasses import dataclass, field

from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, TrainingArguments

from data.closed_book_qa import load_qa_dataset
from data.qa_features import (
    DEFAULT_PROMPT_TEMPLATE,
    QATrainingCollator,
    check_prompt_template,
    prompt_answer_texts,
    tokenize_qa_dataset,
)
from recipes.adapters import name_or_save_base
from recipes.arguments import DataArguments, LoraArguments, ModelArguments, RecipeTrainingArguments
from recipes.closed_book_qa.answer_loss import QATrainer
from recipes.closed_book_qa.generation_eval import GenerationEvalTrainer, answer_stop_ids, prompt_length_that_fits
from recipes.command_line import run_from_command_line
from recipes.common import (
    ConfigError,
    describe_data,
    evaluate,
    load_or_train_tokenizer,
    load_task_splits,
    save_card_and_push,
    start_run,
    train,
)
from recipes.generation import GenerationArguments
from recipes.model_config import check_model_config, check_sequence_length, load_model_config
from recipes.model_loading import hub_kwargs, new_model_kwargs, prepare_for_kbit_training, pretrained_kwargs
from recipes.run_lifecycle import load_trained_model, plan_run

logger = logging.getLogger(__name__)


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
    prompt_template: str = field(
        default=DEFAULT_PROMPT_TEMPLATE, metadata={"help": "Prompt with a {question} field; the answer follows."}
    )
    train_on_all_answers: bool = field(default=False, metadata={"help": "One example per gold answer, not the first."})
    max_seq_length: int = field(default=64, metadata={"help": "Prompt + answer + EOS tokens; prompts cut on the left."})

    def __post_init__(self) -> None:
        check_prompt_template(self.prompt_template)
        if self.max_seq_length < 2:  # one prompt token and the answer's first at least
            raise ConfigError(f"max_seq_length must be at least 2, got {self.max_seq_length}")
        if not (self.dataset_name or self.dataset_mixture or self.train_file or self.validation_file or self.test_file):
            raise ValueError(
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
    start_run(training_args)
    check_model_config(model_args)  # before anything loads: a bad config_overrides fails here
    plan_run(model_args, training_args)
    # Data
    with training_args.main_process_first(desc="data"):  # one process writes the Arrow cache; the others read it
        raw = load_task_splits(
            load_qa_dataset,
            data_args,
            training_args,
            question_column=data_args.question_column,
            answer_column=data_args.answer_column,
        )
    # Tokenizer
    # (the checkpoint's own, or byte-level BPE trained on the training prompts and answers)
    texts = prompt_answer_texts(raw["train"], data_args.prompt_template) if training_args.do_train else ()
    with training_args.main_process_first(desc="tokenizer"):  # one process trains it; every process loads it
        tokenizer = load_or_train_tokenizer(
            training_args,
            model_args.tokenizer_name or model_args.model_name_or_path,
            texts,
            kind="bpe",
            vocab_size=model_args.tokenizer_vocab_size,
            **hub_kwargs(model_args),
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # for generation, here and in the pipeline of the saved folder
    train_dataset = None
    if training_args.do_train:
        with training_args.main_process_first(desc="tokenizing"):
            train_dataset = tokenize_qa_dataset(
                raw["train"],
                tokenizer,
                template=data_args.prompt_template,
                max_seq_length=data_args.max_seq_length,
                all_answers=data_args.train_on_all_answers,
                num_proc=data_args.preprocessing_num_workers,
            )
        logger.info("train: %d examples from %d questions", len(train_dataset), len(raw["train"]))
    # Model
    # (pretrained, or GPT-2 from a config sized to the tokenizer)
    if not training_args.do_train:  # evaluate / predict with the folder as saved
        model = load_trained_model(AutoModelForCausalLM, model_args)
    elif model_args.model_name_or_path:  # dtype, attention, revision, remote code, k-bit: recipes.model_loading
        config = load_model_config(model_args)
        model = AutoModelForCausalLM.from_pretrained(
            model_args.model_name_or_path, config=config, **pretrained_kwargs(model_args)
        )
    else:
        special = {name: getattr(tokenizer, name) for name in ("bos_token_id", "eos_token_id", "pad_token_id")}
        config = load_model_config(model_args, vocab_size=len(tokenizer), **special)
        model = AutoModelForCausalLM.from_config(config, **new_model_kwargs(model_args))
    check_sequence_length(model.config, max_seq_length=data_args.max_seq_length)  # longer: fails mid-run
    model.generation_config = generation_args.generation_config(tokenizer, eos_token_id=answer_stop_ids(tokenizer))
    if training_args.do_train:  # a k-bit model is prepared for its adapters first (QLoRA)
        model = prepare_for_kbit_training(model, training_args)
        model = lora_args.wrap(model, task_type="CAUSAL_LM", default_targets=["c_attn"])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("model: %d parameters, %d trainable", sum(p.numel() for p in model.parameters()), trainable)
    # Trainer
    trainer_class = QATrainer if model_args.answer_only_loss else GenerationEvalTrainer
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=raw.get("validation"),
        data_collator=QATrainingCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        prompt_template=data_args.prompt_template,
        max_prompt_length=prompt_length_that_fits(
            model.config, max_seq_length=data_args.max_seq_length, max_new_tokens=generation_args.max_new_tokens
        ),
        generation_config=model.generation_config,
    )
    # Train
    if training_args.do_train:
        train(trainer)
    # Evaluate
    metrics = evaluate(trainer, {"eval": raw["validation"]}) if training_args.do_eval else {}
    # Predict
    if training_args.do_predict:
        predict_metrics = trainer.evaluate(raw["test"], metric_key_prefix="predict")
        if "answers" in raw["test"].column_names:  # scored only against gold answers
            trainer.save_metrics("predict", predict_metrics)
            metrics |= predict_metrics
    # Save, card, push
    if training_args.do_train:
        if lora_args.use_lora and lora_args.merge_lora_on_save:
            trainer.merge_lora()
        elif lora_args.use_lora:  # the adapters, naming the checkpoint loaded unchanged, else with base/
            name_or_save_base(trainer, None if model_args.config_overrides else model_args.model_name_or_path)
        save_card_and_push(
            trainer,
            title="Closed-book QA",
            data=f"{describe_data(data_args)}: {len(raw['train'])} training questions",
            metrics={k: v for k, v in metrics.items() if k in ("eval_exact_match", "eval_f1")},
            notes=f"A causal LM that answers `{data_args.prompt_template!r}` prompts; evaluated by generation.",
            arguments=(model_args, data_args, lora_args, generation_args, training_args),
        )
    return metrics


if __name__ == "__main__":
    run_from_command_line(main, CONFIG_CLASSES)
