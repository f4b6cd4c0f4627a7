"""The run's model config: read from a checkpoint or built new, by plain functions that each recipe's `main` calls
(the argument classes only hold the values and say which config class and fields their recipe uses).

One rule in every recipe: the checkpoint's config when `model_name_or_path` is given, else a new one from what
the data decides (vocabulary size, special tokens); then the recipe's own fields (`recipe_config_fields()`: a
head, a loss, memory lengths); then `config_overrides`, whose keys must be fields of the config. The config
class validates the result; its `ValueError` (which names the field) becomes the recipes' one configuration error,
`ConfigError`. A composite config (an encoder with a head: `with_fields`) places each field in the part that has it.

It is checked once per run, as early as it can be: in memory when the arguments are parsed (`check_config_values`),
or, when it needs a checkpoint's config (a local folder, or a Hub checkpoint with `config_overrides`), as the first
step of `main` (`check_checkpoint_config`), before any data or tokenizer is loaded. A Hub checkpoint without
`config_overrides` is not downloaded at parse time for this: the recipe's fields are checked on a new config, and
the checkpoint's config comes with the model. `config_differences` compares a saved config with the fields a run
would set (the run lifecycle and evaluate-only loading refuse a mismatch).

Positions: a sequence longer than the model has position embeddings for fails mid-run, in the embedding lookup
(BERT: "The expanded size of the tensor (256) must match the existing size (64)"; GPT-2: "index out of range"),
so `check_sequence_length` refuses it before training or evaluation. RoBERTa-style models
(`POSITIONS_AFTER_PADDING`) start their position ids after the padding id.
"""

import os

from transformers import PretrainedConfig

from recipes.kit.adapters import adapter_base, is_adapter_folder
from recipes.kit.arguments import ModelArguments, parse_overrides
from recipes.kit.errors import ConfigError, naming_hub_id
from recipes.kit.loading_options import hub_kwargs


def check_config_values(model_args: ModelArguments) -> None:
    """Checks the run's model config at parse time, reading nothing (module docstring): builds a new model's
    config in memory, or, for a Hub checkpoint without `config_overrides`, the recipe's fields on a new config. A
    local checkpoint, or a Hub one with `config_overrides`, is left to `check_checkpoint_config`.

    Raises:
        ConfigError: a field or key the config class refuses, naming it.
    """
    if not _reads_checkpoint_config(model_args):
        build_model_config(model_args, None)


def check_checkpoint_config(model_args: ModelArguments) -> None:
    """Checks the run's model config against the checkpoint's, when `check_config_values` left it (module
    docstring): reads the checkpoint's config and applies the recipe's fields and `config_overrides`.

    Raises:
        ConfigError: a key that is no field of the checkpoint's config, a value it refuses, or a checkpoint that
            cannot be found (naming `model_name_or_path`).
    """
    if _reads_checkpoint_config(model_args):
        load_model_config(model_args)


def _reads_checkpoint_config(model_args: ModelArguments) -> bool:
    """Whether checking the run's config needs the checkpoint's: a local folder, or a Hub id with overrides."""
    path = model_args.model_name_or_path
    return bool(path) and (os.path.isdir(path) or bool(model_args.config_overrides))


def load_model_config(model_args: ModelArguments, **new_model_fields: object) -> PretrainedConfig:
    """The run's model config (module docstring): the checkpoint's, read once, or a new one with
    `new_model_fields`; then the recipe's fields and `config_overrides`.

    Raises:
        ConfigError: as `read_checkpoint_config` and `build_model_config`.
    """
    checkpoint = read_checkpoint_config(model_args) if model_args.model_name_or_path else None
    return build_model_config(model_args, checkpoint, **new_model_fields)


def read_checkpoint_config(model_args: ModelArguments, path: str | os.PathLike | None = None) -> PretrainedConfig:
    """The config saved in `path` (default `model_name_or_path`) as the recipe reads it: by its `config_class` at
    `model_revision` (its code run only with `trust_remote_code`), then `as_recipe_config` (sentiment: an encoder's
    config becomes the encoder of a new classifier). An adapter folder is read through its base.

    Raises:
        ConfigError: the config cannot be read (a Hub error, naming `model_name_or_path`), or an adapter folder
            names no base.
    """
    path = path or model_args.model_name_or_path
    with naming_hub_id("model_name_or_path", model_args.model_name_or_path):
        source = adapter_base(path) if is_adapter_folder(path) else path
        config = model_args.config_class.from_pretrained(source, **hub_kwargs(model_args))
    return model_args.as_recipe_config(config)


def build_model_config(
    model_args: ModelArguments, checkpoint: PretrainedConfig | None, **new_model_fields: object
) -> PretrainedConfig:
    """The run's config by the rule of the module docstring, on an already read `checkpoint` config (None: a new
    model); reads nothing.

    Raises:
        ConfigError: an override key the config lacks, or a value its class refuses, naming the field.
    """
    overrides = parse_overrides(model_args.config_overrides)
    fields = {**model_args.recipe_config_fields(), **overrides}
    try:
        if checkpoint is not None:
            _check_override_keys(checkpoint, overrides)
            return config_with_fields(checkpoint, fields)
        config_class = model_args.new_config_class or model_args.config_class
        default = config_class()
        _check_override_keys(default, overrides)
        if hasattr(default, "with_fields"):
            return default.with_fields(**{**new_model_fields, **fields})
        # Built from the fields, not from a default config's dict: fields a config derives from others (the
        # adaptive softmax's per-cluster settings from `cutoffs`) must be derived from the given values.
        return config_class(**{**new_model_fields, **fields})
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(str(error)) from error


def config_with_fields(config: PretrainedConfig, fields: dict) -> PretrainedConfig:
    """A copy of `config` with `fields` set, rebuilt by its class (or its `with_fields`), so that its checks and
    derived fields see the new values.

    Raises:
        ValueError: a value the config class refuses, or a field neither part of a composite config has.
    """
    if hasattr(config, "with_fields"):
        return config.with_fields(**fields)
    return type(config)(**{**config.to_dict(), **fields})


def config_differences(saved: PretrainedConfig, requested: dict, *, where: str) -> list[str]:
    """`"d_model: 32 in checkpoint-4, 64 requested"` for each field of `requested` whose value differs from
    `saved`'s, compared after the config class has normalised both (`0` and `0.0`, derived fields); a composite
    config's encoder fields are looked up in its `encoder`. `where` names `saved` in the messages.

    Raises:
        ValueError: a requested value the config class refuses.
    """
    candidate = config_with_fields(saved, requested)
    return [
        f"{key}: {_field(saved, key)!r} in {where}, {_field(candidate, key)!r} requested"
        for key in requested
        if _field(saved, key) != _field(candidate, key)
    ]


def _field(config: PretrainedConfig, key: str) -> object:
    """`config`'s value of `key`, looked up in its `encoder` sub-config when it has one and `key` is not its own."""
    if hasattr(config, key) or not hasattr(config, "encoder"):
        return getattr(config, key, None)
    return getattr(config.encoder, key, None)


def _check_override_keys(config: PretrainedConfig, overrides: dict) -> None:
    if hasattr(config, "with_fields"):  # checks its own and its encoder's fields
        return
    unknown = sorted(key for key in overrides if not hasattr(config, key))
    if unknown:
        raise ConfigError(f"config_overrides: {type(config).__name__} has no field(s) {unknown}")


#: `model_type`s whose position ids start after the padding id (`RobertaEmbeddings`): `pad_token_id + 1` fewer
#: positions than `max_position_embeddings` (514 in roberta-base: 512 tokens).
POSITIONS_AFTER_PADDING = ("roberta", "xlm-roberta")


def max_positions(config: PretrainedConfig) -> int | None:
    """The most tokens the model (or, for a classifier, its `encoder`) has position embeddings for:
    `max_position_embeddings` (GPT-2's `n_positions`), less the padding offset of `POSITIONS_AFTER_PADDING`; None
    when it has no such limit (relative positions only: Transformer-XL, DeBERTa-v2/v3 without
    `position_biased_input`)."""
    config = getattr(config, "encoder", config)
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None or not getattr(config, "position_biased_input", True):
        return None
    return limit - (config.pad_token_id + 1 if config.model_type in POSITIONS_AFTER_PADDING else 0)


def check_sequence_length(config: PretrainedConfig, **lengths: int) -> None:
    """Checks that the `lengths` settings (`max_seq_length=256`) fit in the model's positions (module docstring).

    Raises:
        ConfigError: they add up to more tokens than `max_positions`, naming each setting and the model's limit.
    """
    limit = max_positions(config)
    if limit is not None and sum(lengths.values()) > limit:
        config = getattr(config, "encoder", config)
        field = config.attribute_map.get("max_position_embeddings", "max_position_embeddings")
        asked = " + ".join(f"{name} {value}" for name, value in lengths.items())
        raise ConfigError(
            f"{asked} > {limit} tokens, the model's {field} (the longest input it has positions for): lower "
            f"{' or '.join(lengths)}"
        )
