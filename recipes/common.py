"""The steps every recipe takes, written once: start (seed, logging), pick the splits of the run's modes,
load or train the tokenizer, train and evaluate, save with a model card and push. The configuration
(YAML + command line -> dataclasses) is `recipes.arguments`.
"""

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import datasets
import transformers
from transformers import (
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)
from transformers.dynamic_module_utils import custom_object_save
from transformers.trainer_utils import get_last_checkpoint

from data.lm_corpus import TextSplit
from data.token_cache import train_tokenizer_once
from data.tokenizers import TokenizerKind, train_tokenizer
from recipes.sharding import ParameterShareLogger, TokenizerInCheckpoints, save_full_model, shard_on_cpu_processes

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A recipe configuration that cannot run; the message names the file and the key."""


def select_splits(
    splits: Mapping[str, datasets.Dataset], training_args: TrainingArguments, *, max_samples: dict[str, int | None]
) -> datasets.DatasetDict:
    """The splits the run's modes use (`do_train`: `train`, `do_eval`: `validation`, `do_predict`: `test`),
    each cut to its first `max_samples[split]` rows (`None` or absent: all); fails, naming the flag to set,
    when one is missing."""
    used = datasets.DatasetDict()
    for mode, split in (("do_train", "train"), ("do_eval", "validation"), ("do_predict", "test")):
        if getattr(training_args, mode):
            if split not in splits:
                raise ConfigError(f"{mode} is true but there is no {split} split: give {split}_file")
            used[split] = splits[split]
            limit = max_samples.get(split)
            if limit is not None and limit < len(used[split]):
                logger.info("%s: keeping the first %d of %d rows", split, limit, len(used[split]))
                used[split] = used[split].select(range(limit))
    return used


def train_and_evaluate(trainer: Trainer, *, eval_datasets: Mapping[str, Any]) -> dict[str, float]:
    """The `do_train` and `do_eval` steps every recipe takes: train (resuming from `checkpoint_to_resume`),
    writing the model's code first (`save_model_code`), then `train_results.json` and `trainer_state.json`
    (every logged loss); then evaluate each of
    `eval_datasets` (metric prefix -> data set), writing `<prefix>_results.json`. Returns the evaluation
    metrics of all of them."""
    if trainer.args.do_train:
        if trainer.args.should_save:  # one writer per folder
            model = trainer.accelerator.unwrap_model(trainer.model)
            save_model_code(getattr(model, "get_base_model", lambda: model)(), trainer.args.output_dir)  # LoRA: base
        trainer.add_callback(ParameterShareLogger())
        trainer.add_callback(TokenizerInCheckpoints())
        train_result = trainer.train(resume_from_checkpoint=checkpoint_to_resume(trainer.args))
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
    metrics = {}
    if trainer.args.do_eval:
        for prefix, dataset in eval_datasets.items():
            split_metrics = trainer.evaluate(dataset, metric_key_prefix=prefix)
            trainer.save_metrics(prefix, split_metrics)
            metrics |= split_metrics
    return metrics


def load_or_train_tokenizer(
    training_args: TrainingArguments,
    source: str | None,
    texts: Iterable[str] | TextSplit,
    *,
    kind: TokenizerKind,
    vocab_size: int,
    cache_dir: str | None = None,
) -> PreTrainedTokenizerBase:
    """The run's tokenizer: `source` (a Hub name or folder) if given; else, when resuming, the one saved in
    the checkpoint; else one trained on `texts`. A `TextSplit` (a corpus read in batches) is trained on once
    per machine: the tokenizer is cached in `cache_dir` (`data.token_cache.train_tokenizer_once`).

    A resumed run must not retrain: the WordPiece and BPE trainers break frequency ties in hash order, which
    changes between processes, so a retrained vocabulary would not match the checkpoint's weights.
    """
    if source:
        logger.info("tokenizer: loaded from %s", source)
        return AutoTokenizer.from_pretrained(source)
    checkpoint = checkpoint_to_resume(training_args)
    if checkpoint:
        logger.info("tokenizer: loaded from %s", checkpoint)
        return PreTrainedTokenizerFast.from_pretrained(checkpoint)
    logger.info("tokenizer: training a %s tokenizer of %d tokens on the training split", kind, vocab_size)
    if isinstance(texts, TextSplit):
        return train_tokenizer_once(texts, kind=kind, vocab_size=vocab_size, cache_dir=cache_dir)
    return train_tokenizer(texts, kind=kind, vocab_size=vocab_size)


def save_model_code(model: PreTrainedModel, output_dir: str) -> None:
    """Writes the model's own code (for `trust_remote_code`) into `output_dir` before training starts.

    `Trainer` pushes during training upload config and weights but not the modeling files, so without
    this a Hub copy made mid-training cannot be loaded until the final push.
    """
    if getattr(type(model), "_auto_class", None) is not None:
        os.makedirs(output_dir, exist_ok=True)
        custom_object_save(model, output_dir, config=model.config)


def start_run(training_args: TrainingArguments) -> None:
    """The first step of every recipe: the seed (`set_seed`, every library's generator), then logging."""
    transformers.set_seed(training_args.seed)
    setup_logging(training_args)
    shard_on_cpu_processes()


def setup_logging(training_args: TrainingArguments) -> None:
    """The recipe's own messages at INFO on the main process (WARNING elsewhere); transformers and datasets
    at `--log_level` / `--log_level_replica` (warnings by default, so their progress chatter stays out)."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler()],
    )
    logging.getLogger().setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    for library in (transformers, datasets):
        library.utils.logging.set_verbosity(training_args.get_process_log_level())
    logger.info(
        "process %d of %d, device %s, bf16 %s",
        training_args.process_index,
        training_args.world_size,
        training_args.device,
        training_args.bf16,
    )


def checkpoint_to_resume(training_args: TrainingArguments) -> str | None:
    """The checkpoint to resume from: `--resume_from_checkpoint` if given, else the last one in `output_dir`.

    Resuming automatically is what makes a crashed or pre-empted run restartable with the same command.
    """
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if os.path.isdir(training_args.output_dir):
        last = get_last_checkpoint(training_args.output_dir)
        if last:
            logger.info("resuming from %s", last)
        return last
    return None


def model_card_text(*, title: str, command: str, data: str, metrics: dict[str, float], notes: str = "") -> str:
    """A README.md for the output folder: what the model is, the data, the final metrics and the command."""
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in sorted(metrics.items()))
    return (
        f"---\nlibrary_name: transformers\ntags:\n- finetune-recipes\n---\n\n# {title}\n\n{notes}\n\n"
        f"## Data\n\n{data}\n\n## Evaluation\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"## How it was made\n\n```bash\n{command}\n```\n"
    )


def save_card_and_push(trainer: Trainer, *, title: str, data: str, metrics: dict[str, Any], notes: str) -> None:
    """The end of every training run: saves the model (and its tokenizer) to `output_dir`, writes the model
    card (`model_card_text`, with the launch command) as its README.md and, with `--push_to_hub`, pushes
    the folder.

    `Trainer.push_to_hub` would replace README.md with its own generic card (no data, no command), so
    the push here skips that step and uploads the card written by the recipe.
    """
    save_full_model(trainer)
    if trainer.is_world_process_zero():
        scalars = {name: value for name, value in metrics.items() if isinstance(value, float)}
        card = model_card_text(title=title, command=launch_command(), data=data, metrics=scalars, notes=notes)
        Path(trainer.args.output_dir, "README.md").write_text(card, encoding="utf-8")
    if trainer.args.push_to_hub:
        trainer.create_model_card = lambda *args, **kwargs: None
        trainer.push_to_hub()


def launch_command(argv: list[str] | None = None) -> str:
    """The command line that started this process, for the model card, with any token value hidden."""
    argv = list(sys.argv if argv is None else argv)
    for i, arg in enumerate(argv):
        if arg.startswith("--") and "token" in arg:
            if "=" in arg:
                argv[i] = arg.split("=", 1)[0] + "=***"
            elif i + 1 < len(argv):
                argv[i + 1] = "***"
    return "accelerate launch " + " ".join(argv)
