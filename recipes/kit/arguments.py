"""A recipe's configuration as dataclasses: the values, and the checks of each field on its own.

A recipe is launched as `accelerate launch recipes/<task>/train.py CONFIG.yaml [--flag value ...]`; the fields
the recipes share are declared once here: `ModelArguments`, `DataArguments` (and `TextCorpusArguments`, the
language-model recipes' data), `LoraArguments`, `RecipeTrainingArguments`; each recipe extends them with its own
fields. A value no run can use raises `ConfigError`, naming the field, when the dataclass is built. Nothing here
reads a file, imports a loader or looks at the machine: what needs more than one dataclass, the installed
packages or a model config is checked by `recipes.kit.command_line` (parsing, which builds a new model's config
in memory) and `recipes.kit.model_config.check_checkpoint_config` (a checkpoint's, the first step of every `main`).

`config_overrides` (`"n_layer=2,cutoffs=[20,40],pre_lnorm=true"`) is read here for its syntax only: its values as
YAML (scalars, or `[...]` lists, whose commas do not separate items), so numbers, booleans and lists get their
types; the model's config class then validates them (`recipes.kit.model_config`), so a bad value fails before
training starts, naming the field.

Early stopping (`early_stopping_patience`) needs `metric_for_best_model` given (the metric that decides must be
chosen, not defaulted to the loss), `load_best_model_at_end` (transformers' `EarlyStoppingCallback` reads the best
metric it keeps) and evaluation during training; `RecipeTrainingArguments` checks them when parsed.
"""

import dataclasses
import json
import os
import re
from typing import Any, ClassVar

import yaml
from transformers import PretrainedConfig, TrainingArguments
from transformers.trainer_utils import IntervalStrategy

from recipes.kit.errors import ConfigError

#: The values of the loading fields that transformers' loaders accept (null: the loader's default).
DTYPES = ("auto", "bfloat16", "float16", "float32")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
BNB_4BIT_QUANT_TYPES = ("nf4", "fp4")
COMPUTE_DTYPES = ("bfloat16", "float16", "float32")
#: The hyperparameter-search backends (`recipes.kit.hp_search`).
SEARCH_BACKENDS = ("optuna",)


@dataclasses.dataclass
class DataArguments:
    """Where a recipe reads its data: a Hub data set or local files (which win when given), and how many examples
    of each split it keeps. Every recipe's data arguments extend this class; a recipe whose default data set
    differs overrides the field's default.

    Raises:
        ConfigError: a count below 1, a `validation_split_percentage` outside 1..99, an empty `dataset_revision`, a
            malformed `dataset_mixture` (`parse_dataset_mixture`), or both `train_file` and `dataset_mixture`.
    """

    dataset_name: str | None = dataclasses.field(
        default=None, metadata={"help": "Hub data set (local files win when given)."}
    )
    dataset_config_name: str | None = dataclasses.field(
        default=None, metadata={"help": "The Hub data set's configuration, e.g. wikitext-103-raw-v1."}
    )
    dataset_revision: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Branch, tag or commit of the Hub dataset_name (in the card); null: its default branch."},
    )
    train_file: list[str] | None = dataclasses.field(
        default=None, metadata={"help": "Local training file, or several (a YAML list; on the command line: a b)."}
    )
    validation_file: list[str] | None = dataclasses.field(default=None, metadata={"help": "Local validation file(s)."})
    test_file: list[str] | None = dataclasses.field(
        default=None, metadata={"help": "Local test file(s) (evaluated or predicted, per recipe)."}
    )
    validation_split_percentage: int | None = dataclasses.field(
        default=None,
        metadata={
            "help": "When the data have no validation split: this % of the training rows (drawn with the seed; the "
            "language models: the last % of the training tokens) becomes it. null: off."
        },
    )
    dataset_mixture: list[dict] | str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "Training rows mixed from several sources, in place of train_file and dataset_name: a YAML list "
            "of {path: FILE or HUB_NAME, weight: FRACTION_OF_ROWS_KEPT, split: (Hub) train, dataset_config_name: "
            "(Hub) ..., revision: (Hub) BRANCH_TAG_OR_COMMIT}, or the same as a JSON string."
        },
    )
    encoding: str = dataclasses.field(
        default="utf-8", metadata={"help": "Local files' encoding, e.g. latin-1 (a UTF-8 byte-order mark is skipped)."}
    )
    max_train_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Keep the first N training examples."}
    )
    max_eval_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Keep the first N validation examples."}
    )
    preprocessing_num_workers: int | None = dataclasses.field(
        default=None, metadata={"help": "Processes that tokenise the examples (default: this one), once per machine."}
    )

    def __post_init__(self) -> None:
        for name in ("max_train_samples", "max_eval_samples", "preprocessing_num_workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        for name in ("train_file", "validation_file", "test_file"):  # a YAML string or a list: one type
            files = getattr(self, name)
            files = [files] if isinstance(files, (str, os.PathLike)) else files
            # An empty name clears the YAML's files (`--train_file ""`), as before lists.
            setattr(self, name, [path for path in files or () if str(path)] or None)
        percentage = self.validation_split_percentage
        if percentage is not None and not 1 <= percentage <= 99:
            raise ConfigError(f"validation_split_percentage must lie in 1..99 (or null: off), got {percentage}")
        if self.dataset_revision is not None and not self.dataset_revision.strip():
            raise ConfigError("dataset_revision must be a branch, tag or commit (or null: the default branch), got ''")
        self.dataset_mixture = parse_dataset_mixture(self.dataset_mixture)
        if self.dataset_mixture and self.train_file:
            raise ConfigError("give train_file or dataset_mixture, not both (the mixture is the training data)")


#: The keys of a `dataset_mixture` entry (`data.mixtures.MixtureSource`) and their defaults.
MIXTURE_ENTRY_DEFAULTS = {"path": None, "weight": 1.0, "split": None, "dataset_config_name": None, "revision": None}


def parse_dataset_mixture(value: str | list | None) -> list[dict[str, Any]] | None:
    """`dataset_mixture` as given (a YAML list of mappings, or the same as a JSON string) -> its entries with every
    key (`MIXTURE_ENTRY_DEFAULTS`); None -> None.

    Raises:
        ConfigError: a value that is not a non-empty list of entries, or an entry with an unknown key, no path, a
            weight outside (0, 1] or a `split`, `dataset_config_name` or `revision` that is not a non-empty name,
            naming the entry (`dataset_mixture[1]`) and the problem.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ConfigError(f"dataset_mixture: not a JSON list of sources ({error.msg}): {value!r}") from None
    if not isinstance(value, list) or not value:
        raise ConfigError(f"dataset_mixture: expected a non-empty list of {{path, weight}} entries, got {value!r}")
    entries = []
    for index, entry in enumerate(value):
        where = f"dataset_mixture[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping such as {{path: data/a.tsv, weight: 0.5}}, got {entry!r}")
        unknown = sorted(set(entry) - set(MIXTURE_ENTRY_DEFAULTS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; the keys are {list(MIXTURE_ENTRY_DEFAULTS)}")
        entry = MIXTURE_ENTRY_DEFAULTS | entry
        path, weight = entry["path"], entry["weight"]
        if not isinstance(path, str) or not path.strip():
            raise ConfigError(f"{where}: path must be a file or a Hub data set name, got {path!r}")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight <= 1:
            raise ConfigError(f"{where} ({path}): weight is the fraction of its rows kept, in (0, 1], got {weight!r}")
        for key in ("split", "dataset_config_name", "revision"):
            if entry[key] is not None and not (isinstance(entry[key], str) and entry[key].strip()):
                raise ConfigError(f"{where} ({path}): {key} must be a name, got {entry[key]!r}")
        entries.append(entry)
    return entries


@dataclasses.dataclass
class TextCorpusArguments(DataArguments):
    """The data of the language-model recipes: a text corpus read as one token stream per split.

    Raises:
        ConfigError: a field that has no meaning for a token stream (`dataset_mixture`, `max_train_samples`,
            `max_eval_samples`, `preprocessing_num_workers`), saying what to use instead; as `DataArguments`.
    """

    text_column: str = dataclasses.field(default="text", metadata={"help": "Column holding the text."})
    token_cache_dir: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "Cache of token streams and trained tokenizers (default ~/.cache/finetune-recipes/"
            "token_streams, or $FINETUNE_RECIPES_CACHE/token_streams)."
        },
    )

    def __post_init__(self) -> None:
        if self.dataset_mixture is not None:
            raise ConfigError(
                "dataset_mixture: a language-model corpus is one ordered stream, not rows to sample; give "
                "train_file as a list of files instead"
            )
        for name in ("max_train_samples", "max_eval_samples"):
            if getattr(self, name) is not None:
                raise ConfigError(
                    f"{name}: a language-model corpus is read as one token stream, not as examples; shorten "
                    "training with max_steps, or give a shorter file"
                )
        if self.preprocessing_num_workers is not None:
            raise ConfigError(
                "preprocessing_num_workers: a language-model corpus is tokenised once per machine by the tokenizer's "
                "own threads (data.token_cache); remove it"
            )
        super().__post_init__()


@dataclasses.dataclass
class ModelArguments:
    """The model fields every recipe shares. A recipe's model arguments extend it, name the config class of its
    model (`config_class`, which reads checkpoints; `new_config_class` when a new model is another class) and
    return their own config fields (head, loss, memory) from `recipe_config_fields`. `config_overrides` is checked
    here for its syntax only; its keys and values by `recipes.kit.model_config`, which applies it last.

    Raises:
        ConfigError: a loading field out of its choices, both k-bit flags, a k-bit flag without
            `model_name_or_path`, a `tokenizer_vocab_size` below 2, or a `config_overrides` that cannot be read.
    """

    config_class: ClassVar[type[PretrainedConfig]]
    new_config_class: ClassVar[type[PretrainedConfig] | None] = None

    model_name_or_path: str | None = dataclasses.field(
        default=None, metadata={"help": "Checkpoint to start from (Hub id or folder); null: a new model from config."}
    )
    tokenizer_name: str | None = dataclasses.field(
        default=None, metadata={"help": "Tokenizer (Hub id or folder); default: the checkpoint's, else trained here."}
    )
    config_overrides: str | None = dataclasses.field(
        default=None, metadata={"help": "Config fields set last, e.g. 'n_layer=2,dropout=0.0,cutoffs=[20,40]'."}
    )
    tokenizer_vocab_size: int = dataclasses.field(
        default=32000, metadata={"help": "Vocabulary of a tokenizer trained here (no tokenizer or checkpoint)."}
    )
    # Loading (recipes.kit.loading_options)
    dtype: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Weights' dtype: auto (the checkpoint's), bfloat16, float16, float32; null: float32."},
    )
    attn_implementation: str | None = dataclasses.field(
        default=None, metadata={"help": "eager, sdpa or flash_attention_2 (if installed); null: the model's default."}
    )
    model_revision: str = dataclasses.field(
        default="main", metadata={"help": "Branch, tag or commit of a Hub model_name_or_path / tokenizer_name."}
    )
    trust_remote_code: bool = dataclasses.field(
        default=False,
        metadata={"help": "Run the Python code a checkpoint ships (custom models), on this machine. Read it first."},
    )
    load_in_4bit: bool = dataclasses.field(
        default=False, metadata={"help": "Quantise the base weights to 4 bits (bitsandbytes): QLoRA; needs use_lora."}
    )
    load_in_8bit: bool = dataclasses.field(
        default=False, metadata={"help": "Quantise the base weights to 8 bits (bitsandbytes); needs use_lora."}
    )
    bnb_4bit_quant_type: str = dataclasses.field(default="nf4", metadata={"help": "4-bit data type: nf4 or fp4."})
    bnb_4bit_compute_dtype: str | None = dataclasses.field(
        default=None, metadata={"help": "dtype of the 4-bit matmuls: bfloat16, float16, float32; null: dtype's."}
    )
    bnb_4bit_use_double_quant: bool = dataclasses.field(
        default=False, metadata={"help": "Quantise the 4-bit scales too (saves ~0.4 bit per weight)."}
    )

    def __post_init__(self) -> None:
        choices = {
            "dtype": DTYPES,
            "attn_implementation": ATTN_IMPLEMENTATIONS,
            "bnb_4bit_quant_type": BNB_4BIT_QUANT_TYPES,
            "bnb_4bit_compute_dtype": COMPUTE_DTYPES,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ConfigError(f"{name} must be one of {list(allowed)} (or null), got {value!r}")
        if self.load_in_4bit and self.load_in_8bit:
            raise ConfigError("load_in_4bit and load_in_8bit are both true: choose one")
        if self.kbit_flag and not self.model_name_or_path:
            raise ConfigError(f"{self.kbit_flag} quantises a pretrained checkpoint: give model_name_or_path")
        if self.tokenizer_vocab_size < 2:
            raise ConfigError(f"tokenizer_vocab_size must be >= 2, got {self.tokenizer_vocab_size}")
        parse_overrides(self.config_overrides)  # its syntax

    @property
    def kbit_flag(self) -> str | None:
        """`"load_in_4bit"` or `"load_in_8bit"`, whichever is set, for messages; None without quantisation."""
        return "load_in_4bit" if self.load_in_4bit else "load_in_8bit" if self.load_in_8bit else None

    def recipe_config_fields(self) -> dict[str, Any]:
        """Config fields the recipe sets from its own flags (a head, a loss, memory lengths)."""
        return {}

    def as_recipe_config(self, checkpoint_config: PretrainedConfig) -> PretrainedConfig:
        """The recipe's view of a checkpoint's config, as `config_class` read it (default: unchanged)."""
        return checkpoint_config


@dataclasses.dataclass
class LoraArguments:
    """LoRA adapters (peft), for the recipes that fine-tune a pretrained model."""

    use_lora: bool = dataclasses.field(default=False, metadata={"help": "Train LoRA adapters, not the whole model."})
    lora_r: int = dataclasses.field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = dataclasses.field(default=16, metadata={"help": "LoRA scaling numerator (scale alpha / r)."})
    lora_dropout: float = dataclasses.field(default=0.05, metadata={"help": "Dropout on the LoRA branch, in [0, 1)."})
    lora_target_modules: list[str] = dataclasses.field(
        default_factory=list, metadata={"help": "Modules that get adapters; [] = the recipe's default."}
    )
    use_dora: bool = dataclasses.field(
        default=False, metadata={"help": "DoRA: adapters on the direction, a trained magnitude per output."}
    )
    use_rslora: bool = dataclasses.field(
        default=False, metadata={"help": "rsLoRA: scale the adapters by alpha / sqrt(r), not alpha / r."}
    )
    lora_modules_to_save: list[str] = dataclasses.field(
        default_factory=list, metadata={"help": "Modules trained whole and saved beside the adapters (lm_head)."}
    )
    merge_lora_on_save: bool = dataclasses.field(
        default=True, metadata={"help": "Save a plain merged model (loads without peft); else the adapter only."}
    )

    def __post_init__(self) -> None:
        for name in ("lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must lie in [0, 1), got {self.lora_dropout}")


@dataclasses.dataclass
class RecipeTrainingArguments(TrainingArguments):
    """`transformers.TrainingArguments` plus `overwrite_output_dir`, the flag of the run lifecycle that 5.x removed
    (`recipes.kit.lifecycle`), and the early-stopping flags (`recipes.kit.callbacks.LoggedEarlyStopping`).

    Raises:
        ConfigError: early-stopping flags that cannot work (`check_early_stopping`).
    """

    overwrite_output_dir: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Start over: delete output_dir (checkpoints, model, metrics) first. Without it a run continues "
            "from output_dir's last checkpoint, or only evaluates / predicts when that run is finished."
        },
    )
    early_stopping_patience: int | None = dataclasses.field(
        default=None,
        metadata={
            "help": "Stop training after this many evaluations in a row without a better metric_for_best_model "
            "(needs load_best_model_at_end and metric_for_best_model); null: never stop early."
        },
    )
    early_stopping_threshold: float = dataclasses.field(
        default=0.0, metadata={"help": "How much metric_for_best_model must beat the best so far to count as better."}
    )
    dry_run: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Do everything up to the first training step (data, tokenizer, model, Trainer), print the resolved "
            "configuration, what the run would do with output_dir, its sizes and two decoded training examples, and "
            "stop: nothing is written into output_dir."
        },
    )
    hp_search: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "optuna: run a hyperparameter search over hp_space, each trial a whole run in output_dir/trial-k "
            "(recipes.kit.hp_search); null: one run."
        },
    )
    hp_trials: int = dataclasses.field(default=8, metadata={"help": "How many trials the search runs in all."})
    hp_space: dict | str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "The search space: {field: [choices] or {low, high, log}}, e.g. {learning_rate: {low: 1.0e-4, "
            "high: 1.0e-2, log: true}, seed: [1, 2]} (on the command line: the same as JSON)."
        },
    )
    #: What the run lifecycle decided for `output_dir` (`recipes.kit.lifecycle.plan_run`), in a line; not a flag.
    run_plan: str = dataclasses.field(default="", init=False)

    def __post_init__(self) -> None:
        metric_given = self.metric_for_best_model is not None  # TrainingArguments defaults it to "loss"
        super().__post_init__()
        check_early_stopping(self, metric_given=metric_given)
        check_search_fields(self)


def check_early_stopping(training_args: RecipeTrainingArguments, *, metric_given: bool) -> None:
    """Checks the early-stopping flags (module docstring); `metric_given`: whether the user gave
    `metric_for_best_model` (TrainingArguments defaults it to "loss").

    Raises:
        ConfigError: a patience below 1 or a negative threshold; or a patience without `metric_for_best_model`
            given, `load_best_model_at_end` or evaluation during training (`eval_strategy` no), naming the flags.
    """
    patience, threshold = training_args.early_stopping_patience, training_args.early_stopping_threshold
    if threshold < 0:
        raise ConfigError(f"early_stopping_threshold must be >= 0, got {threshold}")
    if patience is None:
        return
    if patience < 1:
        raise ConfigError(f"early_stopping_patience must be at least 1 (or null: off), got {patience}")
    missing = [
        flag
        for flag, given in (
            ("metric_for_best_model", metric_given),
            ("load_best_model_at_end true", training_args.load_best_model_at_end),
            (
                "eval_strategy steps or epoch (the same as save_strategy)",
                training_args.eval_strategy != IntervalStrategy.NO,
            ),
        )
        if not given
    ]
    if missing:
        raise ConfigError(f"early_stopping_patience {patience} needs {', '.join(missing)}")


def check_search_fields(training_args: RecipeTrainingArguments) -> None:
    """Raises `ConfigError`, naming the field, on a search that cannot run: an `hp_search` backend other than
    `SEARCH_BACKENDS`, `hp_trials` below 1, an `hp_space` that is not a mapping (a JSON string is read as one) or
    missing with `hp_search`, or a search asked with `dry_run`. Its entries are checked against the recipe's fields
    when parsing (`recipes.kit.hp_search.check_search_space`)."""
    if isinstance(training_args.hp_space, str):
        try:
            training_args.hp_space = json.loads(training_args.hp_space)
        except json.JSONDecodeError as error:
            raise ConfigError(f"hp_space: not a JSON mapping ({error.msg}): {training_args.hp_space!r}") from None
    if training_args.hp_search is None:
        return
    if training_args.hp_search not in SEARCH_BACKENDS:
        raise ConfigError(
            f"hp_search must be one of {list(SEARCH_BACKENDS)} (or null), got {training_args.hp_search!r}"
        )
    if training_args.hp_trials < 1:
        raise ConfigError(f"hp_trials must be at least 1, got {training_args.hp_trials}")
    if not isinstance(training_args.hp_space, dict) or not training_args.hp_space:
        raise ConfigError(f"hp_search {training_args.hp_search} needs hp_space: a mapping of field -> choices or range")
    if training_args.dry_run:
        raise ConfigError("dry_run with hp_search: dry-run one trial's values instead (set them, without hp_search)")


def parse_overrides(overrides: str | None) -> dict:
    """`"n_layer=2,cutoffs=[20,40],pre_lnorm=true"` -> `{"n_layer": 2, "cutoffs": [20, 40], "pre_lnorm": True}`,
    each value read as YAML (module docstring); None or "" -> `{}`.

    Raises:
        ConfigError: an item that is not `key=value`, or a value YAML cannot read.
    """
    result = {}
    items = re.split(r",(?![^\[]*\])", overrides or "")  # commas outside brackets
    for item in filter(None, (part.strip() for part in items)):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"config_overrides: expected key=value, got {item!r}")
        try:
            result[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or type(error).__name__
            raise ConfigError(f"config_overrides: cannot read {item!r} in {overrides!r} ({problem})") from None
    return result
