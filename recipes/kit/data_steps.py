"""The data steps of every recipe, written once: the splits of the run's modes, read from a Hub data set, local
files or a mixture (with a validation split carved when asked), and the tokenizer, loaded or trained here; for the
language-model recipes, the corpus and its token streams.

One process per machine (the local main one) reads, trains and tokenises first, into the caches (Arrow,
`data.token_cache`); the others then read the same files, so every process sees the same rows and the same
vocabulary. A tokenizer trained here is deterministic (the same texts give the same vocabulary in any process:
`data.tokenizers`). A validation split carved from the training data (`validation_split_percentage`) is drawn with
the run's seed (`data.splits`, the same on every process); for a token stream it is the stream's held-out end,
contiguous, as the models read the corpus in order (a tokenizer trained here has read the whole training split).

Tokenizer: `tokenizer_name`, else `model_name_or_path`, else, when resuming, the one saved in the checkpoint, else
one trained here. A resumed run reloads the checkpoint's tokenizer rather than retraining: training is
deterministic, but the training split may have changed since the checkpoint was saved (files edited, another
`train_file`), and a vocabulary trained on other texts would not match the checkpoint's weights. A local folder
with no saved tokenizer is refused: `AutoTokenizer` would guess one from `config.json` instead (an error about
sentencepiece and tiktoken, or for a BERT config a tokenizer with an empty vocabulary).

Token streams: each line ends in `<eos>` when the tokenizer has one (word level); other tokenizers read the lines as
given, and raw WikiText rows keep their own newline.
"""

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import datasets
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast, TrainingArguments

from data.lm_corpus import TextSplit, text_corpus_splits
from data.mixtures import load_mixture, mixture_sources
from data.splits import carve_validation_rows, carve_validation_tokens, validation_split_names
from data.token_cache import prepare_token_streams, train_tokenizer_once
from data.tokenizers import EOS_TOKEN, TokenizerKind
from recipes.kit.arguments import DataArguments, ModelArguments, TextCorpusArguments
from recipes.kit.errors import ConfigError
from recipes.kit.loading_options import hub_kwargs

logger = logging.getLogger(__name__)

#: The files of a tokenizer saved by `save_pretrained`; a folder holding neither has none.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def load_task_splits(
    load_task: Callable[..., datasets.DatasetDict],
    data_args: DataArguments,
    training_args: TrainingArguments,
    **task_arguments: Any,
) -> datasets.DatasetDict:
    """The `# Data` step of the recipes that read rows (sentiment, QA): the splits of the run's modes
    (`select_splits`), read by `load_task` from the local files or the Hub data set, the training rows from
    `dataset_mixture` when given (`data.mixtures`; the Hub data set is then not read), a validation split carved
    when asked (module docstring).

    Args:
        load_task: the task's reader (`load_sentiment_dataset`, `load_qa_dataset`).
        task_arguments: passed to `load_task` (columns, label names).
    Raises:
        ConfigError: a split the run's modes need is missing (`select_splits`).
        DataError: a bad file or row (`load_task`).
    """
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
    with training_args.main_process_first(desc="data"):
        raw = datasets.DatasetDict()
        if not mixture or any(files.values()):
            hub = {
                "dataset_name": data_args.dataset_name,
                "dataset_config_name": data_args.dataset_config_name,
                "dataset_revision": data_args.dataset_revision,
            }
            raw = load_task(**hub, **files, **task_arguments)
        if mixture:
            raw["train"] = load_mixture(mixture, load_task, seed=training_args.seed, **task_arguments)
        if carve and validation_split_names(raw):
            logger.info("validation_split_percentage %d: not used, the data have a validation split", percentage)
        elif carve and "train" in raw:
            raw["train"], raw["validation"] = carve_validation_rows(
                raw["train"], percentage=percentage, seed=training_args.seed
            )
        max_samples = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples}
        return select_splits(raw, training_args, max_samples=max_samples)


def describe_data(data_args: DataArguments) -> str:
    """The run's data in a line, for the model card: the mixture's sources and weights, the local files of each
    split, or the Hub data set (`name@revision` when pinned)."""
    if data_args.dataset_mixture:
        sources = mixture_sources(data_args.dataset_mixture)
        return "mixture of " + ", ".join(f"`{source.description}` ({source.weight:g})" for source in sources)
    files = {split: getattr(data_args, f"{split}_file") for split in ("train", "validation", "test")}
    if any(files.values()):
        return "; ".join(
            f"{split}: " + ", ".join(f"`{path}`" for path in paths) for split, paths in files.items() if paths
        )
    revision = f"@{data_args.dataset_revision}" if data_args.dataset_revision else ""
    return f"`{data_args.dataset_name}{revision}`"


def select_splits(
    splits: Mapping[str, datasets.Dataset], training_args: TrainingArguments, *, max_samples: dict[str, int | None]
) -> datasets.DatasetDict:
    """The splits the run's modes use (`do_train`: `train`, `do_eval`: the validation split, or each of several
    (`data.splits.validation_split_names`: MNLI's matched and mismatched), `do_predict`: `test`), each cut to its
    first `max_samples[split]` rows (`None` or absent: all; `validation`'s for every validation split).

    Raises:
        ConfigError: a split the run needs is missing, naming the flag to set.
    """
    used = datasets.DatasetDict()
    for mode, split in (("do_train", "train"), ("do_eval", "validation"), ("do_predict", "test")):
        if getattr(training_args, mode):
            names = validation_split_names(splits) if split == "validation" else [split] if split in splits else []
            if not names:
                also = " or validation_split_percentage" if split == "validation" else ""
                raise ConfigError(f"{mode} is true but there is no {split} split: give {split}_file{also}")
            limit = max_samples.get(split)
            for name in names:
                used[name] = splits[name]
                if limit is not None and limit < len(used[name]):
                    logger.info("%s: keeping the first %d of %d rows", name, limit, len(used[name]))
                    used[name] = used[name].select(range(limit))
    return used


def load_tokenizer(
    model_args: ModelArguments,
    training_args: TrainingArguments,
    texts: Iterable[str] | TextSplit,
    *,
    kind: TokenizerKind,
    cache_dir: str | None = None,
) -> PreTrainedTokenizerBase:
    """The run's tokenizer (module docstring): `tokenizer_name`, else `model_name_or_path` (read at
    `model_revision`, its code run only with `trust_remote_code`); else, when resuming (`resume_from_checkpoint`),
    the checkpoint's; else one of `tokenizer_vocab_size` tokens trained on `texts`, saved in `cache_dir` and loaded
    from there (`data.token_cache.train_tokenizer_once`).

    Args:
        texts: the training texts: a `TextSplit`, read in batches, or texts in memory.
        kind: the kind of tokenizer trained here (`data.tokenizers`).
    Raises:
        ConfigError: a local folder with no saved tokenizer (`check_tokenizer_files`).
    """
    with training_args.main_process_first(desc="tokenizer"):  # one process trains; every process then loads it
        source = model_args.tokenizer_name or model_args.model_name_or_path
        if source:
            check_tokenizer_files(source)
            logger.info("tokenizer: loaded from %s", source)
            return AutoTokenizer.from_pretrained(source, **hub_kwargs(model_args))
        checkpoint = training_args.resume_from_checkpoint
        if checkpoint:
            logger.info("tokenizer: loaded from %s", checkpoint)
            return PreTrainedTokenizerFast.from_pretrained(checkpoint)
        vocab_size = model_args.tokenizer_vocab_size
        logger.info("tokenizer: training a %s tokenizer of %d tokens on the training split", kind, vocab_size)
        return train_tokenizer_once(texts, kind=kind, vocab_size=vocab_size, cache_dir=cache_dir)


def check_tokenizer_files(source: str) -> None:
    """Checks that `source`, when it is a local folder, holds a saved tokenizer (module docstring).

    Raises:
        ConfigError: none of `TOKENIZER_FILES` is there, naming the folder and the files.
    """
    if os.path.isdir(source) and not any(os.path.isfile(os.path.join(source, name)) for name in TOKENIZER_FILES):
        raise ConfigError(
            f"{source} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}): put back the files of the tokenizer "
            "it was trained with, or give that tokenizer as tokenizer_name"
        )


def load_corpus(data_args: TextCorpusArguments, training_args: TrainingArguments) -> dict[str, TextSplit]:
    """The language-model recipes' `# Data` step: the corpus's splits, not yet read (`data.lm_corpus`); progress
    bars on the local main process only.

    Raises:
        DataError: no data given, a missing file, or a Hub data set without the splits.
    """
    return text_corpus_splits(
        dataset_name=data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        dataset_revision=data_args.dataset_revision,
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
    """The language-model recipes' `# Tokenizer` step: the tokenizer (`load_tokenizer`, trained on the
    training split) and the token stream of every split the run trains on (`do_train`) or scores (`do_eval`:
    validation and test), tokenised into the cache by one process per machine and memory-mapped by the others;
    with `validation_split_percentage` and no validation split, the end of the training stream becomes it (module
    docstring).

    Args:
        corpus: the splits of `load_corpus`.
    Raises:
        ConfigError: as `load_tokenizer`.
        DataError: a bad file, or a split with no tokens.
    """
    percentage = data_args.validation_split_percentage
    carve = percentage is not None and "validation" not in corpus
    used = {
        "train": training_args.do_train or carve,
        "validation": training_args.do_eval,
        "test": training_args.do_eval,
    }
    scored = {split: corpus[split] for split in corpus if used[split]}
    texts = corpus["train"] if training_args.do_train else ()
    tokenizer = load_tokenizer(model_args, training_args, texts, kind=kind, cache_dir=data_args.token_cache_dir)
    with training_args.main_process_first(desc="token streams"):
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
