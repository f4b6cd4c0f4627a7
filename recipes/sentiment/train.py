"""Text classification (sentiment and beyond): any transformers encoder with an MLP head, fine-tuned on labelled texts.

    accelerate launch recipes/sentiment/train.py recipes/sentiment/configs/tiny.yaml

The encoder usually comes pretrained; what the task adds is a head and the label names, kept with the
weights. So the encoder of `model_name_or_path` (BERT, RoBERTa, DeBERTa-v3, ModernBERT, ...: any
`AutoModel`) gets a new MLP head in `EncoderMLPForSequenceClassification` (optionally with LoRA adapters), is
trained on the texts or text pairs (`text_pair_column`) of `data.sentiment` (a Hub data set or local files), for one
label, a set of labels or a score (`problem_type`: `recipes.sentiment.problem_types`), scored by that problem type's
metrics, and saved with its code, `problem_type` and `id2label`, so the folder classifies through
`pipeline("text-classification", trust_remote_code=True)` anywhere. Flags, modes and files: README.md, "Sentiment,
and text classification" and "Bring your own model and data".
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
import transformers
from transformers import (
    MODEL_FOR_CAUSAL_LM_MAPPING,
    MODEL_FOR_MASKED_LM_MAPPING,
    AutoConfig,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
)

import custom_models  # noqa: F401  (registers encoder-mlp and bert-mlp with the Auto classes)
from custom_models.encoder_mlp import EncoderMLPConfig, EncoderMLPForSequenceClassification
from custom_models.encoder_mlp.mlp_head import sequence_classification_loss
from data.files import write_jsonl
from data.loading import RowTexts
from data.metrics import ClassificationMetric
from data.sentiment import load_sentiment_dataset, text_columns, tokenize_sentences
from data.splits import validation_split_names
from recipes.kit.adapters import add_lora_adapters
from recipes.kit.arguments import DataArguments, LoraArguments, ModelArguments, RecipeTrainingArguments
from recipes.kit.command_line import run_from_command_line
from recipes.kit.data_steps import describe_data, load_task_splits, load_tokenizer
from recipes.kit.errors import ConfigError
from recipes.kit.loading_options import hub_kwargs, pretrained_kwargs
from recipes.kit.model_config import read_checkpoint_config
from recipes.kit.model_loading import load_model
from recipes.kit.run_steps import evaluate_splits, save_card_and_push, start_run, train
from recipes.kit.trainers import RecipeTrainer
from recipes.sentiment.problem_types import (
    MULTI_LABEL,
    PROBLEM_TYPES,
    REGRESSION,
    SCORE_NAME,
    check_best_metric,
    label_arguments,
    prediction_rows,
    prediction_scores,
    problem_type_of,
)

logger = logging.getLogger(__name__)

#: `model_type`s of classifiers this recipe trained (`bert-mlp`: before any encoder was accepted): their head
#: is loaded too. Any other checkpoint is an encoder that gets a new head.
CLASSIFIER_MODEL_TYPES = ("encoder-mlp", "bert-mlp")
#: The attention projections that get LoRA adapters by default, per encoder `model_type`; others: every linear layer.
LORA_TARGETS = {
    "bert": ["query", "key", "value"],
    "roberta": ["query", "key", "value"],
    "xlm-roberta": ["query", "key", "value"],
    "electra": ["query", "key", "value"],
    "distilbert": ["q_lin", "k_lin", "v_lin"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj"],
    "modernbert": ["Wqkv"],
}
#: `class_names` when none are given (SST-2's).
DEFAULT_CLASS_NAMES = ["negative", "positive"]


@dataclass
class SentimentModelArguments(ModelArguments):
    """The encoder checkpoint and the classification head; `class_names` and `problem_type` set the head's outputs
    (`num_labels`, `id2label`, `problem_type`), so a checkpoint trained with others is not resumed."""

    config_class = AutoConfig  # a checkpoint may be any encoder (`as_recipe_config`)
    new_config_class = EncoderMLPConfig

    tokenizer_vocab_size: int = field(
        default=1000, metadata={"help": "Vocabulary of a WordPiece tokenizer trained here."}
    )
    mlp_hidden_sizes: list[int] = field(
        default_factory=lambda: [256], metadata={"help": "Widths of the head's hidden layers ([] = one linear layer)."}
    )
    mlp_activation: str = field(default="gelu", metadata={"help": "Activation between head layers (ACT2FN name)."})
    mlp_dropout: float = field(default=0.1, metadata={"help": "Dropout before each linear layer of the head."})
    pooling: str = field(default="cls", metadata={"help": "Sequence vector fed to the head: cls, mean or pooler."})
    class_names: list[str] = field(
        default_factory=lambda: list(DEFAULT_CLASS_NAMES),
        metadata={"help": "Label names in id order (a trained model's own names win when do_train is false)."},
    )
    problem_type: str = field(
        default="single_label_classification",
        metadata={"help": "single_label_classification, multi_label_classification or regression (no class_names)."},
    )

    def __post_init__(self) -> None:
        if self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"problem_type must be one of {list(PROBLEM_TYPES)}, got {self.problem_type!r}")
        if self.problem_type == REGRESSION and self.class_names != DEFAULT_CLASS_NAMES:
            raise ConfigError(f"class_names {self.class_names!r}: a regression has one score and no classes; remove it")
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            raise ConfigError(f"class_names must hold at least two distinct names, got {self.class_names!r}")
        super().__post_init__()  # the head fields and config_overrides, checked by the config classes

    def recipe_config_fields(self) -> dict:
        names = ("mlp_hidden_sizes", "mlp_activation", "mlp_dropout", "pooling", "problem_type")
        outputs = [SCORE_NAME] if self.problem_type == REGRESSION else self.class_names
        labels = {"id2label": dict(enumerate(outputs)), "label2id": {n: i for i, n in enumerate(outputs)}}
        return {name: getattr(self, name) for name in names} | {"num_labels": len(outputs), **labels}

    def as_recipe_config(self, checkpoint_config: PretrainedConfig) -> PretrainedConfig:
        """A classifier's own config (`encoder-mlp` or `bert-mlp`); any other checkpoint's config becomes the
        encoder of a new classifier, whose `with_fields` sets the fields that are not the head's (the vocabulary,
        `config_overrides` such as `hidden_size=32`) on the encoder's config."""
        if checkpoint_config.model_type in CLASSIFIER_MODEL_TYPES:
            return checkpoint_config
        check_encoder(checkpoint_config, self.model_name_or_path)
        return EncoderMLPConfig(encoder=checkpoint_config)


def check_encoder(config: PretrainedConfig, path: str | None) -> None:
    """Fails, naming the checkpoint, when `config` is a decoder's (a causal LM without a masked-LM form: GPT-2,
    Llama, ...): its tokenizer has no padding token and its first token sees nothing after it, so the `cls` and
    `pooler` heads would read a vector that knows only that token."""
    if type(config) in MODEL_FOR_CAUSAL_LM_MAPPING and type(config) not in MODEL_FOR_MASKED_LM_MAPPING:
        raise ConfigError(
            f"model_name_or_path {path}: a {config.model_type!r} model is a decoder (a causal language model); the "
            "sentiment recipe trains an encoder: BERT, RoBERTa, XLM-R, DistilBERT, ELECTRA, DeBERTa-v2/v3, ModernBERT"
        )


@dataclass
class SentimentDataArguments(DataArguments):
    """Labelled texts or text pairs: a Hub data set (SST-2 by default) or local csv / tsv / json(l) files."""

    dataset_name: str | None = field(default="stanfordnlp/sst2", metadata={"help": "Hub data set (local files win)."})
    text_column: str = field(default="sentence", metadata={"help": "Column holding the text."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Column holding the second text of a pair (MNLI's hypothesis); null: none."}
    )
    label_column: str = field(default="label", metadata={"help": "Column holding the label (an id or a name)."})
    label_separator: str = field(
        default=",", metadata={"help": "multi_label_classification: what separates the labels in a text cell."}
    )
    max_seq_length: int = field(
        default=128, metadata={"help": "Longer texts (pairs: the longer of the two first) are truncated to this."}
    )

    def __post_init__(self) -> None:
        if self.max_seq_length < 2:  # [CLS] and [SEP] at least
            raise ConfigError(f"max_seq_length must be at least 2, got {self.max_seq_length}")
        if self.text_pair_column is not None and self.text_pair_column in ("", self.text_column):
            raise ConfigError(
                f"text_pair_column must name a column other than text_column, got {self.text_pair_column!r}"
            )
        if not self.label_separator:
            raise ConfigError("label_separator must not be empty")
        super().__post_init__()

    def columns(self) -> dict[str, str | None]:
        """The columns `data.sentiment.load_sentiment_dataset` reads, and how it splits a multi-label cell."""
        names = ("text_column", "text_pair_column", "label_column", "label_separator")
        return {name: getattr(self, name) for name in names}


CONFIG_CLASSES = (SentimentModelArguments, SentimentDataArguments, LoraArguments, RecipeTrainingArguments)


def main(
    model_args: SentimentModelArguments,
    data_args: SentimentDataArguments,
    lora_args: LoraArguments,
    training_args: transformers.TrainingArguments,
) -> dict[str, float]:
    # Run
    start_run(model_args, training_args)
    trained_config = None if training_args.do_train else read_checkpoint_config(model_args)  # its labels
    labels = label_arguments(model_args.problem_type, model_args.class_names, trained_config)
    # Data
    raw = load_task_splits(load_sentiment_dataset, data_args, training_args, **data_args.columns(), **labels)
    eval_splits = evaluation_splits(raw)
    check_best_metric(training_args, labels["problem_type"], list(eval_splits))
    # Tokenizer
    texts = RowTexts(raw["train"], text_columns(raw["train"]), make=join_texts) if training_args.do_train else ()
    tokenizer = load_tokenizer(model_args, training_args, texts, kind="wordpiece")
    tokenized = tokenize_splits(raw, tokenizer, data_args, training_args)
    # Model
    model = load_model(
        AutoModelForSequenceClassification,
        model_args,
        training_args,
        new_model_fields={"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id},
        lengths={"max_seq_length": data_args.max_seq_length},
        saved_config=trained_config,
        load_checkpoint=load_checkpoint,
    )
    targets = lora_targets(model.config)
    model = add_lora_adapters(
        model, lora_args, training_args, task_type="SEQ_CLS", default_targets=targets, modules_to_save=["classifier"]
    )
    # Trainer
    trainer = RecipeTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized.get("train"),
        eval_dataset=trainer_eval_dataset(tokenized, eval_splits),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=classification_metrics(model.config),
    )
    # Train
    if training_args.do_train:
        train(trainer)
    # Evaluate
    eval_sets = {prefix: tokenized[split] for prefix, split in eval_splits.items()}
    metrics = evaluate_splits(trainer, eval_sets) if training_args.do_eval else {}
    # Predict
    if training_args.do_predict:
        metrics |= predict(trainer, raw["test"], tokenized["test"])
    # Save, card, push
    if training_args.do_train:
        save_card_and_push(
            trainer,
            title=f"{Path(training_args.output_dir).name}: encoder + MLP head for text classification",
            data=f"{describe_data(data_args)}: {describe_labels(raw['train'], model_args)}.",
            metrics=metrics,
            notes=f"Encoder: `{model_args.model_name_or_path or 'built from config'}`; head: "
            f"{model_args.recipe_config_fields()}; LoRA: {lora_args.use_lora}. Load with `trust_remote_code=True`.",
            arguments=(model_args, data_args, lora_args, training_args),
        )
    return metrics


def evaluation_splits(raw: datasets.DatasetDict) -> dict[str, str]:
    """The validation splits of `raw` by metric prefix: `{"eval": "validation"}`, or for named ones (MNLI)
    `{"eval_matched": "validation_matched", "eval_mismatched": "validation_mismatched"}`; `{}` without any."""
    return {"eval" + split.removeprefix("validation"): split for split in validation_split_names(raw)}


def trainer_eval_dataset(
    tokenized: datasets.DatasetDict, eval_splits: dict[str, str]
) -> datasets.Dataset | dict[str, datasets.Dataset] | None:
    """What `Trainer` evaluates during training: the validation split, or the named ones as a dict (`Trainer` then
    reports `eval_matched_accuracy` for the key `matched`: the prefixes of `evaluation_splits`); None without any."""
    if list(eval_splits) == ["eval"]:
        return tokenized["validation"]
    return {prefix.removeprefix("eval_"): tokenized[split] for prefix, split in eval_splits.items()} or None


def join_texts(*texts: str) -> str:
    """A row's texts as one text to train a tokenizer on: a pair's two texts joined by a space."""
    return " ".join(texts)


def describe_labels(train: datasets.Dataset, model_args: SentimentModelArguments) -> str:
    """The training rows and their labels in words, for the model card."""
    rows = f"{len(train)} training {'text pairs' if 'text_pair' in train.column_names else 'sentences'}"
    if model_args.problem_type == REGRESSION:
        return f"{rows}, a score each (regression)"
    kind = "label sets over" if model_args.problem_type == MULTI_LABEL else "labels"
    return f"{rows}, {kind} {model_args.class_names}"


def tokenize_splits(
    raw: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    data_args: SentimentDataArguments,
    training_args: transformers.TrainingArguments,
) -> datasets.DatasetDict:
    """Every split of `raw` tokenised (`data.sentiment.tokenize_sentences`), truncated to `max_seq_length`: once per
    machine, by the local main process first, into the Arrow cache the others then read."""
    with training_args.main_process_first(desc="tokenizing"):
        return datasets.DatasetDict(
            {
                split: tokenize_sentences(
                    rows,
                    tokenizer,
                    max_seq_length=data_args.max_seq_length,
                    num_proc=data_args.preprocessing_num_workers,
                )
                for split, rows in raw.items()
            }
        )


def classification_metrics(config: PretrainedConfig) -> Callable[[transformers.EvalPrediction], dict[str, float]]:
    """`compute_metrics` of the classifier of `config`: the metrics of its problem type
    (`recipes.sentiment.problem_types.prediction_scores`), and the loss as the mean over examples
    (`mean_example_loss`)."""
    metric, problem_type = ClassificationMetric(), problem_type_of(config)

    def compute_metrics(eval_pred: transformers.EvalPrediction) -> dict[str, float]:
        scores = prediction_scores(problem_type, eval_pred.predictions, eval_pred.label_ids, metric)
        return {"loss": mean_example_loss(eval_pred, config), **scores}

    return compute_metrics


def load_checkpoint(model_args: SentimentModelArguments, config: PretrainedConfig) -> PreTrainedModel:
    """The model to train from `model_name_or_path` under `config` (with the loading fields:
    `recipes.kit.loading_options`), the recipe's reader for `load_model`: a classifier this recipe saved keeps its
    head; any other checkpoint is read by `AutoModel` (from any of its saves: `BertModel`, `BertForMaskedLM`, ...)
    as the encoder of a new classifier."""
    path, loading = model_args.model_name_or_path, pretrained_kwargs(model_args)
    if PretrainedConfig.get_config_dict(path, **hub_kwargs(model_args))[0].get("model_type") in CLASSIFIER_MODEL_TYPES:
        return AutoModelForSequenceClassification.from_pretrained(path, config=config, **loading)
    return EncoderMLPForSequenceClassification.from_encoder_pretrained(path, config=config, encoder_kwargs=loading)


def lora_targets(config: PretrainedConfig) -> list[str] | str:
    """The default LoRA targets of the encoder of `config` (`LORA_TARGETS`, else `"all-linear"`)."""
    encoder_type = config.encoder.model_type if isinstance(config, EncoderMLPConfig) else "bert"  # bert-mlp: BERT
    return LORA_TARGETS.get(encoder_type, "all-linear")


def predict(trainer: Trainer, texts: datasets.Dataset, tokenized: datasets.Dataset) -> dict[str, float]:
    """Classifies the test split: `predictions.jsonl` (the text, or the pair, and what the model predicts:
    `recipes.sentiment.problem_types.prediction_rows`, in input order) and, when the split has labels,
    `predict_results.json` (the metrics of the problem type)."""
    output = trainer.predict(tokenized, metric_key_prefix="predict")  # gathered over processes, in dataset order
    config = trainer.accelerator.unwrap_model(trainer.model).config
    if trainer.is_world_process_zero():
        inputs = {column: texts[column] for column in text_columns(texts)}
        rows = [
            dict(zip(inputs, values)) | prediction
            for values, prediction in zip(zip(*inputs.values()), prediction_rows(output.predictions, config))
        ]
        write_jsonl(Path(trainer.args.output_dir) / "predictions.jsonl", rows)
    if output.label_ids is None:
        return {}
    trainer.save_metrics("predict", output.metrics)
    return output.metrics


def mean_example_loss(eval_pred: transformers.EvalPrediction, config: PretrainedConfig) -> float:
    """The model's loss averaged over the examples of a split, each counted once on any number of processes and
    at any batch size. `Trainer` gathers the logits and labels of every process and drops the repeated tail of
    the last batches; the mean of their per-example losses replaces `Trainer`'s own `eval_loss` (a `loss`
    from compute_metrics overwrites it: `Trainer.evaluation_loop`), whose batch means, repeated batch-size
    times, weigh the last batches of several processes wrongly."""
    logits, labels = torch.from_numpy(eval_pred.predictions).float(), torch.from_numpy(eval_pred.label_ids)
    return sequence_classification_loss(logits, labels, config, reduction="none").double().mean().item()


if __name__ == "__main__":
    run_from_command_line(main, CONFIG_CLASSES)
