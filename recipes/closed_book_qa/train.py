"""Closed-book QA: fine-tune a causal LM (GPT-2 by default) to answer questions, and evaluate it by generation.

    accelerate launch recipes/closed_book_qa/train.py recipes/closed_book_qa/configs/tiny.yaml

Features
- Any `AutoModelForCausalLM`, or a GPT-2 built from a config (`model_name_or_path: null` +
  `config_overrides: "n_embd=64,n_layer=2"`) with a byte-level BPE tokenizer trained on the training split.
- Data: a Hub data set (NQ-open by default) or local `train_file` / `validation_file`, mapped to
  `question` / `answers` by `data.closed_book_qa` (NQ-open, TriviaQA, WebQuestions layouts).
- Each example is `prompt_template.format(question=...)` + " answer" + EOS; the loss covers the answer and
  EOS only. `train_on_all_answers` makes one example per gold answer instead of the first one.
- Evaluation generates (greedy, or beam with `num_beams`) from left-padded prompts, stops at EOS or a newline,
  and logs `eval_exact_match` / `eval_f1` (SQuAD normalisation, best over gold answers); each question is
  scored once on any number of processes. `output_dir/predictions.jsonl` holds question, prediction,
  answers, em and f1; `output_dir/eval_results.json` the metrics.
- LoRA (`use_lora`, merged into the saved model), resume from the last checkpoint, a model card, and
  `--push_to_hub`.

The saved folder answers through the text-generation pipeline, with the same prompt template:

    qa = pipeline("text-generation", model="OUTPUT_DIR")
    out = qa("question: who wrote hamlet\\nanswer:", return_full_text=False)
    answer = out[0]["generated_text"].split("\\n")[0].strip()

Flags: every field of `QAArguments` below and of `transformers.TrainingArguments`, in the YAML or as
`--flag value` (the command line wins).
Errors: `ConfigError` for an unknown YAML key; `ValueError` for invalid values (e.g. a `prompt_template`
without `{question}`) before anything loads; `data.errors.DataError` naming file and line for bad data.
"""

import logging
from dataclasses import dataclass, field

import transformers
from transformers import AutoConfig, AutoModelForCausalLM, TrainingArguments

from data.closed_book_qa import load_qa_dataset
from data.qa_features import DEFAULT_PROMPT_TEMPLATE, QATrainingCollator, check_prompt_template, tokenize_qa_dataset
from recipes.closed_book_qa.generation_eval import GenerationEvalTrainer, answer_generation_config
from recipes.common import (
    checkpoint_to_resume,
    launch_command,
    load_or_train_tokenizer,
    model_card_text,
    run_from_command_line,
    setup_logging,
    write_card_and_push,
)

logger = logging.getLogger(__name__)


@dataclass
class QAArguments:
    model_name_or_path: str | None = field(default="gpt2", metadata={"help": "Hub id or folder; null: from config."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "With model_name_or_path null: GPT-2 config changes, 'n_embd=64,n_layer=2'."}
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer, if not model_name_or_path's."})
    tokenizer_vocab_size: int = field(
        default=1000, metadata={"help": "Vocabulary of the BPE tokenizer trained when no tokenizer is named."}
    )
    dataset_name: str | None = field(
        default="google-research-datasets/nq_open", metadata={"help": "Hub data set (ignored given local files)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub data set's config."})
    train_file: str | None = field(default=None, metadata={"help": "Local training file (jsonl, json, csv, tsv)."})
    validation_file: str | None = field(default=None, metadata={"help": "Local validation file."})
    question_column: str = field(default="question", metadata={"help": "Column holding the question."})
    answer_column: str = field(default="answer", metadata={"help": "Column holding the answer(s)."})
    prompt_template: str = field(
        default=DEFAULT_PROMPT_TEMPLATE, metadata={"help": "Prompt with a {question} field; the answer follows."}
    )
    train_on_all_answers: bool = field(default=False, metadata={"help": "One example per gold answer, not the first."})
    max_seq_length: int = field(default=64, metadata={"help": "Prompt + answer + EOS tokens; prompts cut on the left."})
    max_new_tokens: int = field(default=16, metadata={"help": "Most tokens generated per answer."})
    num_beams: int = field(default=1, metadata={"help": "1: greedy decoding; more: beam search."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training questions."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N validation questions."})
    use_lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (merged into the saved model)."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: str = field(default="c_attn", metadata={"help": "Comma-separated module names."})
    predictions_file: str = field(default="predictions.jsonl", metadata={"help": "Written into output_dir."})

    def __post_init__(self):
        check_prompt_template(self.prompt_template)
        for name in ("tokenizer_vocab_size", "max_seq_length", "max_new_tokens", "num_beams", "lora_r"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_train_samples", "max_eval_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 or null, got {getattr(self, name)}")
        if self.config_overrides and self.model_name_or_path:
            raise ValueError("config_overrides only applies when building from a config (model_name_or_path: null)")
        if not (self.dataset_name or self.train_file):
            raise ValueError("give dataset_name or train_file")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")


CONFIG_CLASSES = (QAArguments, TrainingArguments)


def main(args: QAArguments, training_args: TrainingArguments) -> dict[str, float]:
    transformers.set_seed(training_args.seed)
    setup_logging(training_args)
    raw = load_qa_dataset(
        dataset_name=args.dataset_name,
        dataset_config_name=args.dataset_config_name,
        train_file=args.train_file,
        validation_file=args.validation_file,
        question_column=args.question_column,
        answer_column=args.answer_column,
    )
    for split, limit in (("train", args.max_train_samples), ("validation", args.max_eval_samples)):
        if limit is not None and split in raw and limit < len(raw[split]):
            logger.info("%s: keeping the first %d of %d questions", split, limit, len(raw[split]))
            raw[split] = raw[split].select(range(limit))

    # Tokenizer: the checkpoint's own, or byte-level BPE trained on the training prompts and answers.
    pairs = zip(raw["train"]["question"], raw["train"]["answers"])
    texts = (args.prompt_template.format(question=q) + " " + " ".join(answers) for q, answers in pairs)
    tokenizer = load_or_train_tokenizer(
        training_args, args.tokenizer_name or args.model_name_or_path, texts, kind="bpe",
        vocab_size=args.tokenizer_vocab_size,
    )  # fmt: skip
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # for generation, here and in the pipeline of the saved folder

    # Model: pretrained, or GPT-2 from a config sized to the tokenizer.
    if args.model_name_or_path:
        model = AutoModelForCausalLM.from_pretrained(args.model_name_or_path)
    else:
        config = AutoConfig.for_model("gpt2")
        if args.config_overrides:
            config.update_from_string(args.config_overrides)
        config.update({"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id})
        config.update({"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id})
        model = AutoModelForCausalLM.from_config(config)
    model.generation_config = answer_generation_config(
        tokenizer, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams
    )
    if args.use_lora:
        from peft import LoraConfig, get_peft_model

        targets = [name.strip() for name in args.lora_target_modules.split(",")]
        lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                          target_modules=targets, task_type="CAUSAL_LM")  # fmt: skip
        model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("model: %d parameters, %d trainable", sum(p.numel() for p in model.parameters()), trainable)

    with training_args.main_process_first(desc="tokenizing"):
        train_dataset = tokenize_qa_dataset(
            raw["train"],
            tokenizer,
            template=args.prompt_template,
            max_seq_length=args.max_seq_length,
            all_answers=args.train_on_all_answers,
        )
    logger.info("train: %d examples from %d questions", len(train_dataset), len(raw["train"]))

    trainer = GenerationEvalTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=raw.get("validation"),
        data_collator=QATrainingCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        prompt_template=args.prompt_template,
        max_prompt_length=args.max_seq_length,
        generation_config=model.generation_config,
        predictions_file=args.predictions_file,
    )
    train_result = trainer.train(resume_from_checkpoint=checkpoint_to_resume(training_args))
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()  # trainer_state.json: the log history (every logged loss)
    metrics = {}
    if "validation" in raw:
        metrics = trainer.evaluate()
        trainer.save_metrics("eval", metrics)

    if args.use_lora:
        trainer.model = trainer.model.merge_and_unload()  # the saved folder is a plain model
    trainer.save_model(training_args.output_dir)  # weights, generation_config, tokenizer
    data = f"{args.train_file or args.dataset_name}: {len(raw['train'])} training questions"
    card = model_card_text(
        title="Closed-book QA",
        command=launch_command(),
        data=data,
        metrics={k: v for k, v in metrics.items() if k in ("eval_exact_match", "eval_f1")},
        notes=f"A causal LM that answers `{args.prompt_template!r}` prompts; evaluated by generation.",
    )
    write_card_and_push(trainer, card)
    return metrics


if __name__ == "__main__":
    run_from_command_line(main, CONFIG_CLASSES)
