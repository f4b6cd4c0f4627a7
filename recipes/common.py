"""The steps every recipe takes, written once: start (seed, logging), pick the splits of the run's modes,
load or train the tokenizer (the language-model recipes: the corpus and its token streams too), train and
evaluate, save with a model card and push. The configuration (YAML + command line -> dataclasses) is
`recipes.arguments` and `recipes.command_line`.
"""

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import datasets
import torch
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

from data.lm_corpus import TextSplit, text_corpus_splits
from data.mixtures import load_mixture, mixture_sources
from data.splits import carve_validation_rows, carve_validation_tokens
from data.token_cache import prepare_token_streams, train_tokenizer_once
from data.tokenizers import EOS_TOKEN, TokenizerKind
from recipes.arguments import DataArguments, ModelArguments, TextCorpusArguments
from recipes.early_stopping import early_stopping_callbacks
from recipes.errors import ConfigError
from recipes.model_loading import hub_kwargs
from recipes.sharding import ParameterShareLogger, TokenizerInCheckpoints, save_full_model, shard_on_cpu_processes
from recipes.trainer import CardInfo, RecipeTrainer, is_quality, pipeline_tag

logger = logging.getLogger(__name__)

#: The files of a tokenizer saved by `save_pretrained`; a folder holding neither has none.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def load_task_splits(
    load_task: Callable[..., datasets.DatasetDict],
    data_args: DataArguments,
    training_args: TrainingArguments,
    **task_arguments: Any,
) -> datasets.DatasetDict:
    """The `# Data` step of the recipes that read rows (sentiment, QA): `load_task` (`load_sentiment_dataset`,
    `load_qa_dataset`, given `task_arguments`: columns, label names) reads the files of the run's modes, or the
    Hub data set; with `dataset_mixture`, the training rows are the mixture's (`data.mixtures`) and the Hub data
    set is not read; with `validation_split_percentage` and no validation split in the data, one is carved from
    the training rows with the run's seed (`data.splits`, the same on every process); then `select_splits`."""
    percentage = data_args.validation_split_percentage
    carve = percentage is not None and not data_args.validation_file
    read_train = training_args.do_train or (training_args.do_eval and carve)
    mixture = mixture_sources(data_args.dataset_mixture) if read_train else []
    files = {
        "train_file": data_args.train_file if read_train else None,
        "validation_file": data_args.validation_file if training_args.do_eval else None,
        "test_file": data_args.test_file if training_args.do_predict else None,
    }
    task_arguments["encoding"] = data_args.encoding
    raw = datasets.DatasetDict()
    if not mixture or any(files.values()):
        hub = {"dataset_name": data_args.dataset_name, "dataset_config_name": data_args.dataset_config_name}
        raw = load_task(**hub, **files, **task_arguments)
    if mixture:
        raw["train"] = load_mixture(mixture, load_task, seed=training_args.seed, **task_arguments)
    if carve and "validation" in raw:
        logger.info("validation_split_percentage %d: not used, the data have a validation split", percentage)
    elif carve and "train" in raw:
        raw["train"], raw["validation"] = carve_validation_rows(
            raw["train"], percentage=percentage, seed=training_args.seed
        )
    max_samples = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples}
    return select_splits(raw, training_args, max_samples=max_samples)


def describe_data(data_args: DataArguments) -> str:
    """The run's data in a line, for the model card: the mixture's sources and weights, the local files of each
    split, or the Hub data set."""
    if data_args.dataset_mixture:
        sources = mixture_sources(data_args.dataset_mixture)
        return "mixture of " + ", ".join(f"`{source.description}` ({source.weight:g})" for source in sources)
    files = {split: getattr(data_args, f"{split}_file") for split in ("train", "validation", "test")}
    if any(files.values()):
        return "; ".join(
            f"{split}: " + ", ".join(f"`{path}`" for path in paths) for split, paths in files.items() if paths
        )
    return f"`{data_args.dataset_name}`"


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
                also = " or validation_split_percentage" if split == "validation" else ""
                raise ConfigError(f"{mode} is true but there is no {split} split: give {split}_file{also}")
            used[split] = splits[split]
            limit = max_samples.get(split)
            if limit is not None and limit < len(used[split]):
                logger.info("%s: keeping the first %d of %d rows", split, limit, len(used[split]))
                used[split] = used[split].select(range(limit))
    return used


def train(trainer: Trainer) -> None:
    """The `do_train` step: writes the model's code first (`save_model_code`), trains (resuming from the
    checkpoint the run lifecycle chose; stopping early with `--early_stopping_patience`), then writes
    `train_results.json` and `trainer_state.json` (every logged loss)."""
    if trainer.args.should_save:  # one writer per folder
        model = trainer.accelerator.unwrap_model(trainer.model)
        save_model_code(getattr(model, "get_base_model", lambda: model)(), trainer.args.output_dir)  # LoRA: base
    trainer.add_callback(ParameterShareLogger())
    trainer.add_callback(TokenizerInCheckpoints())
    for callback in early_stopping_callbacks(trainer.args):  # `--early_stopping_patience`
        trainer.add_callback(callback)
    train_result = trainer.train(resume_from_checkpoint=checkpoint_to_resume(trainer.args))
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()


def evaluate(trainer: Trainer, eval_datasets: Mapping[str, Any]) -> dict[str, float]:
    """The `do_eval` step: evaluates each of `eval_datasets` (metric prefix -> data set), writing
    `<prefix>_results.json`; returns the metrics of all of them."""
    metrics = {}
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
    revision: str = "main",
    trust_remote_code: bool = False,
) -> PreTrainedTokenizerBase:
    """The run's tokenizer: `source` (a Hub name or folder, read at `revision`, its code run only with
    `trust_remote_code`: `recipes.model_loading.hub_kwargs`) if given; else, when resuming, the one saved in
    the checkpoint; else one trained on `texts` (a `TextSplit`, read in batches, or texts in memory) once per
    machine, saved in `cache_dir` and loaded from there (`data.token_cache.train_tokenizer_once`). Call it
    inside `training_args.main_process_first()`, so that one process trains and every process loads the same
    tokenizer from the cache, rather than every rank reading the training split and training it again.

    A resumed run reloads the checkpoint's tokenizer rather than retraining: training is deterministic (the same
    texts give the same vocabulary in any process), but the training split may have changed since the
    checkpoint was saved (files edited, another `train_file`), and a vocabulary trained on other texts would not
    match the checkpoint's weights.
    """
    if source:
        check_tokenizer_files(source)
        logger.info("tokenizer: loaded from %s", source)
        return AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    checkpoint = checkpoint_to_resume(training_args)
    if checkpoint:
        logger.info("tokenizer: loaded from %s", checkpoint)
        return PreTrainedTokenizerFast.from_pretrained(checkpoint)
    logger.info("tokenizer: training a %s tokenizer of %d tokens on the training split", kind, vocab_size)
    return train_tokenizer_once(texts, kind=kind, vocab_size=vocab_size, cache_dir=cache_dir)


def check_tokenizer_files(source: str) -> None:
    """Fails, naming the folder and the files, when `source` is a local folder with no saved tokenizer (the files
    that `save_pretrained` writes). `AutoTokenizer` would guess one from `config.json` instead: an error about
    sentencepiece and tiktoken, or for a BERT config a tokenizer with an empty vocabulary."""
    if os.path.isdir(source) and not any(os.path.isfile(os.path.join(source, name)) for name in TOKENIZER_FILES):
        raise ConfigError(
            f"{source} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}): put back the files of the tokenizer "
            "it was trained with, or give that tokenizer as tokenizer_name"
        )


def load_corpus(data_args: TextCorpusArguments, training_args: TrainingArguments) -> dict[str, TextSplit]:
    """The language-model recipes' `# Data` step: the corpus's splits, not yet read (`data.lm_corpus`); progress
    bars on the local main process only."""
    return text_corpus_splits(
        dataset_name=data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        train_file=data_args.train_file,
        validation_file=data_args.validation_file,
        test_file=data_args.test_file,
        text_column=data_args.text_column,
        encoding=data_args.encoding,
        show_progress=training_args.local_process_index == 0 and not training_args.disable_tqdm,
    )


def load_tokenizer_and_streams(
    model_args: ModelArguments,
    data_args: TextCorpusArguments,
    corpus: dict[str, TextSplit],
    training_args: TrainingArguments,
    *,
    kind: TokenizerKind,
) -> tuple[PreTrainedTokenizerBase, dict[str, torch.Tensor]]:
    """The language-model recipes' `# Tokenizer` step: the tokenizer (loaded, or trained on the training split)
    and the token stream of every split the run trains on (`do_train`) or scores (`do_eval`: validation and
    test), each line ending in `<eos>` when the tokenizer has one (word level; other tokenizers read the lines
    as given, and raw WikiText rows keep their own newline). One process per machine trains and tokenises into
    the cache (`data.token_cache`); the others then memory-map its files. `corpus`: `load_corpus`. With
    `validation_split_percentage` and no validation split, the last part of the training stream becomes it (a
    tokenizer trained here has read the whole training split)."""
    percentage = data_args.validation_split_percentage
    carve = percentage is not None and "validation" not in corpus
    used = {
        "train": training_args.do_train or carve,
        "validation": training_args.do_eval,
        "test": training_args.do_eval,
    }
    scored = {split: corpus[split] for split in corpus if used[split]}
    with training_args.main_process_first(desc="tokenizer and token streams"):
        tokenizer = load_or_train_tokenizer(
            training_args,
            model_args.tokenizer_name or model_args.model_name_or_path,
            corpus["train"] if training_args.do_train else (),
            kind=kind,
            vocab_size=model_args.tokenizer_vocab_size,
            cache_dir=data_args.token_cache_dir,
            **hub_kwargs(model_args),
        )
        add_eos = EOS_TOKEN in tokenizer.get_vocab()
        streams = prepare_token_streams(scored, tokenizer, add_eos=add_eos, cache_dir=data_args.token_cache_dir)
    if percentage is not None and not carve:
        logger.info("validation_split_percentage %d: not used, the corpus has a validation split", percentage)
    if carve and "train" in streams:  # the held-out tail: contiguous, as the models read the corpus in order
        streams["train"], streams["validation"] = carve_validation_tokens(streams["train"], percentage=percentage)
    logger.info("tokens: %s; vocabulary %d", {s: t.numel() for s, t in streams.items()}, len(tokenizer))
    return tokenizer, streams


def stream_source(corpus: dict[str, TextSplit], split: str) -> str:
    """Where the token stream of `split` was read from, for messages (`data.streams`): its files or Hub split; for a
    validation split carved from the training stream (`validation_split_percentage`), the training files."""
    if split in corpus:
        return corpus[split].description
    return f"{corpus['train'].description} (the held-out end, validation_split_percentage)"


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
    """The checkpoint to resume from: `--resume_from_checkpoint`, which `recipes.run_lifecycle.plan_run` sets
    to the last readable checkpoint in `output_dir` (checked against this run's model config).

    Resuming automatically is what makes a crashed or pre-empted run restartable with the same command.
    """
    return training_args.resume_from_checkpoint


def save_card_and_push(
    trainer: RecipeTrainer, *, title: str, data: str, metrics: dict[str, Any], notes: str, arguments: tuple
) -> None:
    """The end of every training run: saves the model (and its tokenizer) to `output_dir`, writes the model
    card (`RecipeTrainer.create_model_card`: front matter, data, metrics, the command as typed and the
    resolved configuration of `arguments`, the run's parsed dataclasses) as its README.md and, with
    `--push_to_hub`, pushes the folder (`Trainer.push_to_hub` writes the same card again before uploading)."""
    save_full_model(trainer)
    model = trainer.accelerator.unwrap_model(trainer.model)
    model_args = next(args for args in arguments if isinstance(args, ModelArguments))
    data_args = next(args for args in arguments if isinstance(args, DataArguments))
    checkpoint = model_args.model_name_or_path
    trainer.card_info = CardInfo(
        title=title,
        data=data,
        notes=notes,
        task_type=pipeline_tag(model),
        metrics={name: value for name, value in metrics.items() if isinstance(value, float) and is_quality(name)},
        arguments=arguments,
        base_model=checkpoint if checkpoint and not os.path.exists(checkpoint) else None,
        dataset_id=None if data_args.train_file or data_args.dataset_mixture else data_args.dataset_name,
    )
    trainer.create_model_card()
    if trainer.args.push_to_hub:
        trainer.push_to_hub()
