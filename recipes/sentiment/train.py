"""Sentiment classification: a BERT-family encoder with an MLP head, fine-tuned, evaluated, saved and pushed.

    accelerate launch recipes/sentiment/train.py recipes/sentiment/configs/tiny.yaml

What it does: loads `train` / `validation` sentences (`dataset_name`, default `stanfordnlp/sst2`, or local
`train_file` / `validation_file`) through `data.sentiment`, tokenizes them (the checkpoint's tokenizer, or a
WordPiece tokenizer trained on the training split when no model or tokenizer is given), builds
`BertMLPForSequenceClassification` through `AutoModelForSequenceClassification` (from `model_name_or_path`,
any BERT-architecture checkpoint, whose encoder is loaded and whose head is new; or from scratch with
`config_overrides`), optionally wraps it in LoRA adapters (`use_lora`; the head stays fully trainable),
trains with dynamic padding, keeps the best checkpoint by `metric_for_best_model`, and writes to `output_dir`
the model with its code (`trust_remote_code`), `id2label` names, the tokenizer, `eval_results.json` and a
model card. `--push_to_hub` uploads that folder from the main process. A run in an `output_dir` that holds
checkpoints resumes from the last one.

Flags: every field of `SentimentArguments` below and of `transformers.TrainingArguments`; command-line flags
override the YAML. Errors: an unknown YAML key raises `recipes.common.ConfigError`; an invalid value raises
`ValueError` naming the field before anything loads; bad data (missing column, empty text, unknown label)
raises `data.errors.DataError` naming the file and line.
"""

import dataclasses
import logging
from pathlib import Path

import numpy as np
import transformers
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer

import custom_models  # noqa: F401  (registers bert-mlp with the Auto classes)
from custom_models.bert_mlp import BertMLPConfig
from data.metrics import ClassificationMetric
from data.sentiment import load_sentiment_dataset
from recipes.common import (
    checkpoint_to_resume,
    launch_command,
    load_or_train_tokenizer,
    model_card_text,
    parse_overrides,
    run_from_command_line,
    save_model_code,
    setup_logging,
    write_card_and_push,
)  # fmt: skip

logger = logging.getLogger(__name__)


def _field(default, help: str, **kwargs):
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


@dataclasses.dataclass
class SentimentArguments:
    # Model
    model_name_or_path: str | None = _field(None, "BERT-architecture checkpoint (folder or Hub); None: from scratch")
    tokenizer_name: str | None = _field(None, "tokenizer to load; default: model_name_or_path's")
    config_overrides: str | None = _field(None, "from-scratch model only: 'hidden_size=32,num_hidden_layers=2,...'")
    tokenizer_vocab_size: int = _field(1000, "vocabulary of the WordPiece tokenizer trained when no tokenizer is given")
    mlp_hidden_sizes: list[int] = _field([256], "widths of the head's hidden layers ([] = one linear layer)")
    mlp_activation: str = _field("gelu", "activation between head layers (a transformers ACT2FN name)")
    mlp_dropout: float = _field(0.1, "dropout before each linear layer of the head")
    pooling: str = _field("cls", "sequence vector fed to the head: cls, mean or pooler")
    # Data
    dataset_name: str | None = _field("stanfordnlp/sst2", "Hub data set (ignored when local files are given)")
    dataset_config_name: str | None = _field(None, "the Hub data set's configuration")
    train_file: str | None = _field(None, "local csv / tsv / json(l) file (relative: to the cwd, else the repo)")
    validation_file: str | None = _field(None, "local csv / tsv / json(l) file (relative: to the cwd, else the repo)")
    text_column: str = _field("sentence", "column holding the text")
    label_column: str = _field("label", "column holding the label (an id or a name)")
    encoding: str = _field("utf-8", "local files' text encoding, e.g. latin-1 (a UTF-8 byte-order mark is skipped)")
    class_names: list[str] = _field(["negative", "positive"], "label names in id order (not `label_names`: Trainer's)")
    max_seq_length: int = _field(128, "longer texts are truncated to this many tokens")
    max_train_samples: int | None = _field(None, "keep only the first N training examples")
    max_eval_samples: int | None = _field(None, "keep only the first N validation examples")
    # LoRA
    use_lora: bool = _field(False, "train LoRA adapters on the attention projections plus the full head")
    lora_r: int = _field(8, "LoRA rank")
    lora_alpha: int = _field(16, "LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = _field(0.05, "dropout on the LoRA branch")
    lora_target_modules: list[str] = _field(["query", "key", "value"], "modules that get adapters")
    merge_lora_on_save: bool = _field(True, "save a plain merged model (else the adapter only)")

    def __post_init__(self):
        # The model config validates the head fields and names the bad one.
        BertMLPConfig(mlp_hidden_sizes=self.mlp_hidden_sizes, mlp_activation=self.mlp_activation,
                      mlp_dropout=self.mlp_dropout, pooling=self.pooling)  # fmt: skip
        if self.config_overrides and self.model_name_or_path:
            raise ValueError("config_overrides only applies to a model built from scratch (model_name_or_path=None)")
        parse_overrides(self.config_overrides)
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must hold at least two distinct names, got {self.class_names!r}")
        positive = ("max_seq_length", "tokenizer_vocab_size", "lora_r", "lora_alpha", "max_train_samples",
                    "max_eval_samples")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must lie in [0, 1), got {self.lora_dropout!r}")

    def head_fields(self) -> dict:
        names = ("mlp_hidden_sizes", "mlp_activation", "mlp_dropout", "pooling")
        return {name: getattr(self, name) for name in names}


def main(args: SentimentArguments, training_args: transformers.TrainingArguments) -> dict[str, float]:
    transformers.set_seed(training_args.seed)
    setup_logging(training_args)

    raw = load_sentiment_dataset(
        dataset_name=args.dataset_name, dataset_config_name=args.dataset_config_name,
        train_file=args.train_file, validation_file=args.validation_file,
        text_column=args.text_column, label_column=args.label_column, label_names=args.class_names,
        encoding=args.encoding,
    )  # fmt: skip
    for split, limit in (("train", args.max_train_samples), ("validation", args.max_eval_samples)):
        if limit is not None and limit < len(raw[split]):
            logger.info("%s: keeping the first %d of %d examples", split, limit, len(raw[split]))
            raw[split] = raw[split].select(range(limit))

    tokenizer = load_or_train_tokenizer(
        training_args, args.tokenizer_name or args.model_name_or_path, raw["train"]["text"], kind="wordpiece",
        vocab_size=args.tokenizer_vocab_size,
    )  # fmt: skip
    tokenized = raw.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=args.max_seq_length),
        batched=True, remove_columns=["text"], desc="tokenizing",
    )  # fmt: skip

    labels = {"num_labels": len(args.class_names), "id2label": dict(enumerate(args.class_names)),
              "label2id": {name: i for i, name in enumerate(args.class_names)}}  # fmt: skip
    if args.model_name_or_path:  # encoder from the checkpoint, head newly initialised
        config = BertMLPConfig.from_pretrained(args.model_name_or_path, **labels, **args.head_fields())
        model = AutoModelForSequenceClassification.from_pretrained(args.model_name_or_path, config=config)
    else:
        config = BertMLPConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                               **parse_overrides(args.config_overrides), **labels, **args.head_fields())  # fmt: skip
        model = AutoModelForSequenceClassification.from_config(config)
    save_model_code(model, training_args.output_dir)  # Hub copies pushed mid-training stay loadable
    if args.use_lora:
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(
            task_type=TaskType.SEQ_CLS, r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
            target_modules=args.lora_target_modules, modules_to_save=["classifier"],
        ))  # fmt: skip
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("parameters: %d, trainable: %d", sum(p.numel() for p in model.parameters()), trainable)

    metric = ClassificationMetric()

    def compute_metrics(eval_pred: transformers.EvalPrediction) -> dict[str, float]:
        return metric.compute(predictions=np.argmax(eval_pred.predictions, axis=-1), references=eval_pred.label_ids)

    trainer = Trainer(
        model=model, args=training_args, train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
        processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics,
    )  # fmt: skip
    train_result = trainer.train(resume_from_checkpoint=checkpoint_to_resume(training_args))
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()  # trainer_state.json: the log history (every logged loss)
    metrics = trainer.evaluate()
    trainer.save_metrics("eval", metrics)

    if args.use_lora and args.merge_lora_on_save:  # a plain model: loads without peft, code files included
        trainer.model = trainer.model_wrapped = trainer.model.merge_and_unload()
    trainer.save_model()
    data = args.train_file and f"`{args.train_file}` / `{args.validation_file}`" or f"`{args.dataset_name}`"
    card = model_card_text(
        title=f"{Path(training_args.output_dir).name}: BERT + MLP head for sentiment",
        command=launch_command(), metrics={k: v for k, v in metrics.items() if isinstance(v, float)},
        data=f"{data}: {len(raw['train'])} training and {len(raw['validation'])} validation sentences, "
             f"labels {args.class_names}.",
        notes=f"Encoder: `{args.model_name_or_path or 'built from config'}`; head: {args.head_fields()}; "
              f"LoRA: {args.use_lora}. Load with `trust_remote_code=True`.",
    )  # fmt: skip
    write_card_and_push(trainer, card)  # our card: Trainer.push_to_hub would replace it
    return metrics


CONFIG_CLASSES = (SentimentArguments, transformers.TrainingArguments)

if __name__ == "__main__":
    run_from_command_line(main, CONFIG_CLASSES)
