"""What every recipe shares: YAML + command line -> dataclasses, logging, resume, model card and push.

A recipe is launched as `accelerate launch recipes/<task>/train.py CONFIG.yaml [--flag value ...]`:
the YAML gives the values, flags on the command line override them, and a key that no dataclass
knows fails by name before anything runs (as in alignment-handbook).
"""

import dataclasses
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import datasets
import torch
import transformers
import yaml
from transformers import (
    AutoTokenizer,
    HfArgumentParser,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)
from transformers.dynamic_module_utils import custom_object_save
from transformers.trainer_utils import get_last_checkpoint

from data.lm_corpus import TextSplit, text_corpus_splits
from data.token_cache import train_tokenizer_once
from data.tokenizers import TokenizerKind, train_tokenizer

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A recipe configuration that cannot run; the message names the file and the key."""


@dataclasses.dataclass
class TextCorpusArguments:
    """Where a language-modelling recipe reads its text: a Hub data set or local text files. The LM
    recipes' argument classes extend this one, so the fields and their loading live in one place."""

    dataset_name: str | None = dataclasses.field(
        default=None, metadata={"help": "Hub data set, e.g. Salesforce/wikitext."}
    )
    dataset_config_name: str | None = dataclasses.field(
        default=None, metadata={"help": "e.g. wikitext-103-raw-v1 (raw text) or wikitext-103-v1 (word level)."}
    )
    train_file: str | None = dataclasses.field(
        default=None, metadata={"help": "Local training text (one line per row)."}
    )
    validation_file: str | None = dataclasses.field(default=None, metadata={"help": "Local validation text."})
    test_file: str | None = dataclasses.field(default=None, metadata={"help": "Local test text (evaluated too)."})
    text_column: str = dataclasses.field(default="text", metadata={"help": "Column holding the text."})
    encoding: str = dataclasses.field(
        default="utf-8", metadata={"help": "Local files' encoding, e.g. latin-1 (a UTF-8 byte-order mark is skipped)."}
    )
    token_cache_dir: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Cache of token streams and trained tokenizers (default ~/.cache/finetune-recipes/"
                  "token_streams, or $FINETUNE_RECIPES_CACHE/token_streams)."},
    )  # fmt: skip

    def text_splits(self, training_args: TrainingArguments) -> dict[str, TextSplit]:
        """The corpus's splits, not yet read; progress bars on the local main process only."""
        return text_corpus_splits(
            dataset_name=self.dataset_name,
            dataset_config_name=self.dataset_config_name,
            train_file=self.train_file,
            validation_file=self.validation_file,
            test_file=self.test_file,
            text_column=self.text_column,
            encoding=self.encoding,
            show_progress=training_args.local_process_index == 0 and not training_args.disable_tqdm,
        )


def run_from_command_line(main: Callable[..., dict], config_classes: tuple[type, ...]) -> None:
    """A recipe's command-line entry: parse `CONFIG.yaml [--flag value ...]`, run `main`, then leave the
    process group. A process that exits with gloo's threads still alive can abort ("terminate called
    without an active exception") after all its work is done, failing the launch."""
    main(*parse_config(*config_classes))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def parse_config(*dataclass_types: type, argv: list[str] | None = None) -> tuple:
    """Parses `[CONFIG.yaml] [--key value ...]` into instances of `dataclass_types`.

    Values from the YAML become the parser's defaults, so any `--key value` on the command line wins.
    On a machine without an accelerator `use_cpu` defaults to true. Unknown YAML keys raise
    `ConfigError`; invalid values raise from the dataclasses' own checks (`__post_init__`), before any
    data or model is loaded.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types)
    if any(issubclass(dtype, TrainingArguments) for dtype in dataclass_types):
        # With no accelerator, `use_cpu` is what makes a multi-process launch (`--multi_gpu`, gloo)
        # really distributed: without it accelerate sees no device and every process runs alone.
        parser.set_defaults(use_cpu=not torch.accelerator.is_available())
    if argv and argv[0].endswith((".yaml", ".yml")):
        config_file = Path(argv.pop(0))
        parser.set_defaults(**_read_yaml(config_file, parser))
    return parser.parse_args_into_dataclasses(args=argv)


def _read_yaml(config_file: Path, parser: HfArgumentParser) -> dict:
    if not config_file.is_file():
        raise ConfigError(f"{config_file}: no such config file")
    values = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{config_file}: expected a mapping of key: value, got {type(values).__name__}")
    known = {field.name for dtype in parser.dataclass_types for field in dataclasses.fields(dtype) if field.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{config_file}: unknown key(s) {unknown}; check the spelling against --help")
    return values


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
        return AutoTokenizer.from_pretrained(source)
    checkpoint = checkpoint_to_resume(training_args)
    if checkpoint:
        return PreTrainedTokenizerFast.from_pretrained(checkpoint)
    if isinstance(texts, TextSplit):
        return train_tokenizer_once(texts, kind=kind, vocab_size=vocab_size, cache_dir=cache_dir)
    return train_tokenizer(texts, kind=kind, vocab_size=vocab_size)


def parse_overrides(overrides: str | None) -> dict:
    """`"n_layer=2,cutoffs=[20,40],pre_lnorm=true"` -> `{"n_layer": 2, "cutoffs": [20, 40], "pre_lnorm": True}`.

    Values are read as YAML (scalars, or `[...]` lists, whose commas do not separate items), so numbers,
    booleans and lists get their types; the model's config class then validates them, so a bad value
    fails before training starts, naming the field.
    """
    result = {}
    items = re.split(r",(?![^\[]*\])", overrides or "")  # commas outside brackets
    for item in filter(None, (part.strip() for part in items)):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"config_overrides: expected key=value, got {item!r}")
        result[key.strip()] = yaml.safe_load(value)
    return result


class LogPartitionSums:
    """Token-weighted sums of a model's per-batch self-normalisation statistics (`log_partition_mean`,
    `log_partition_std`, `log_partition_outlier_fraction` of its output), turned into the metrics of a
    whole evaluation set over all processes. The NCE and Transformer-XL trainers' `evaluate` share it."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)  # tokens, log Z, log Z^2, outliers

    def add(self, output: transformers.utils.ModelOutput, num_tokens: torch.Tensor) -> None:
        """Adds one batch of `num_tokens` scored tokens (skip batches with none: their means are NaN)."""
        mean, std = output.log_partition_mean.double(), output.log_partition_std.double()
        outliers = output.log_partition_outlier_fraction.double()
        self.sums += num_tokens.double() * torch.stack([torch.ones_like(mean), mean, std**2 + mean**2, outliers])

    def metrics(self, trainer: Trainer, prefix: str) -> dict[str, float]:
        """`{prefix}_log_partition_{mean,std,outlier_fraction}` over every process (none if no batch had them).
        Every process must call it: the sums are reduced across processes."""
        tokens, log_z, log_z_sq, outliers = trainer.accelerator.reduce(self.sums, reduction="sum").tolist()
        if tokens == 0:
            return {}
        mean = log_z / tokens
        return {
            f"{prefix}_log_partition_mean": mean,
            f"{prefix}_log_partition_std": max(log_z_sq / tokens - mean**2, 0.0) ** 0.5,
            f"{prefix}_log_partition_outlier_fraction": outliers / tokens,
        }


def save_model_code(model: PreTrainedModel, output_dir: str) -> None:
    """Writes the model's own code (for `trust_remote_code`) into `output_dir` before training starts.

    `Trainer` pushes during training upload config and weights but not the modeling files, so without
    this a Hub copy made mid-training cannot be loaded until the final push.
    """
    if getattr(type(model), "_auto_class", None) is not None:
        os.makedirs(output_dir, exist_ok=True)
        custom_object_save(model, output_dir, config=model.config)


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


def write_card_and_push(trainer: Trainer, card: str) -> None:
    """Writes `card` as the output folder's README.md and, with `--push_to_hub`, pushes the folder.

    `Trainer.push_to_hub` would replace README.md with its own generic card (no data, no command), so
    the push here skips that step and uploads the card written by the recipe.
    """
    if trainer.is_world_process_zero():
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
