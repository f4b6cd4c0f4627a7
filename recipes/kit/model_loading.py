"""The Model step of every recipe, written once: the model a run trains, evaluates or predicts with.

Three cases, decided by the parsed (and lifecycle-planned) arguments:
- evaluate / predict only (`do_train` false): the trained folder `model_name_or_path` exactly as saved
  (`load_trained_model`): no recipe field applied, and a `config_overrides` or a weight that does not fit it
  refused, so a number reported for a folder is that folder's;
- training from `model_name_or_path`: the checkpoint under the run's config (`load_model_config`: its config,
  the recipe's fields, `config_overrides`), by the recipe's Auto class unless the recipe reads its checkpoints
  its own way (sentiment: any encoder under a new head);
- training a new model: the run's config with what the data decide (vocabulary size, special tokens), built by
  the Auto class.
Every case honours the loading fields (`recipes.kit.loading_options`: dtype, attention, quantisation) and ends with
the sequence-length check, so a setting longer than the model's positions fails before training, not mid-run. A
folder of LoRA adapters saved unmerged is loaded on its base, as its run held it (`recipes.kit.adapters`).
"""

from collections.abc import Callable

from transformers import PretrainedConfig, PreTrainedModel, TrainingArguments

from recipes.kit.adapters import is_adapter_folder, load_adapter_model
from recipes.kit.arguments import ModelArguments, parse_overrides
from recipes.kit.errors import CheckpointError, ConfigError
from recipes.kit.loading_options import new_model_kwargs, pretrained_kwargs
from recipes.kit.model_config import (
    check_sequence_length,
    config_differences,
    load_model_config,
    read_checkpoint_config,
)

#: A recipe's own reader of `model_name_or_path` under the run's config, for a checkpoint the Auto class cannot read.
CheckpointLoader = Callable[[ModelArguments, PretrainedConfig], PreTrainedModel]


def load_model(
    auto_class: type,
    model_args: ModelArguments,
    training_args: TrainingArguments,
    *,
    new_model_fields: dict[str, object],
    lengths: dict[str, int],
    saved_config: PretrainedConfig | None = None,
    load_checkpoint: CheckpointLoader | None = None,
) -> PreTrainedModel:
    """The run's model (module docstring).

    Args:
        auto_class: the recipe's Auto class (`AutoModelForCausalLM`, `AutoModelForSequenceClassification`); it maps
            each config class of this repository to its model class.
        new_model_fields: the config fields of a new model that the data decide (`vocab_size`, special token ids).
        lengths: the run's token-length settings (`{"max_seq_length": 128}`), checked against the model's positions.
        saved_config: evaluate-only: the folder's config when the recipe has already read it (else read here).
        load_checkpoint: the recipe's reader of a checkpoint to train from (default: `auto_class.from_pretrained`).
    Raises:
        ConfigError: a config, a length or a `config_overrides` the model cannot take.
        CheckpointError: a saved folder whose weights do not fit its model.
    """
    if not training_args.do_train:
        model = load_trained_model(auto_class, model_args, saved_config)
    elif model_args.model_name_or_path:
        config = load_model_config(model_args)
        if load_checkpoint is not None:
            model = load_checkpoint(model_args, config)
        else:
            model = auto_class.from_pretrained(
                model_args.model_name_or_path, config=config, **pretrained_kwargs(model_args)
            )
    else:
        config = load_model_config(model_args, **new_model_fields)
        model = auto_class.from_config(config, **new_model_kwargs(model_args))
    check_sequence_length(model.config, **lengths)
    return model


def load_trained_model(
    model_class: type, model_args: ModelArguments, saved: PretrainedConfig | None = None
) -> PreTrainedModel:
    """The trained folder `model_args.model_name_or_path` exactly as saved, no recipe field applied (module
    docstring), for evaluation and prediction.

    Args:
        model_class: the recipe's model class or Auto class.
        saved: the folder's config when the recipe has already read it (`read_checkpoint_config`); else it is read
            here, once, for the check and the model.
    Raises:
        ConfigError: a `config_overrides` value that differs from the saved config, naming the field; a folder the
            config cannot be read from; an adapter folder whose weights do not fit its base.
        CheckpointError: a missing, unexpected or mis-shaped weight, naming the weights.
    """
    folder = model_args.model_name_or_path
    saved = read_checkpoint_config(model_args) if saved is None else saved
    differences = config_differences(saved, parse_overrides(model_args.config_overrides), where=folder)
    if differences:
        raise ConfigError(
            f"config_overrides would change the trained model ({'; '.join(differences)}): evaluate and predict use "
            "the folder as saved; drop these config_overrides (--config_overrides '') or train with do_train true"
        )
    if is_adapter_folder(folder):  # LoRA adapters saved unmerged, on their base (`recipes.kit.adapters`), checked there
        return load_adapter_model(model_class, folder, config=saved, **pretrained_kwargs(model_args))
    model, loading_info = model_class.from_pretrained(
        folder, config=saved, output_loading_info=True, **pretrained_kwargs(model_args)
    )
    wrong = {kind: loading_info.get(kind) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    wrong = {kind: sorted(map(str, keys)) for kind, keys in wrong.items() if keys}
    if wrong:
        raise CheckpointError(f"{folder}: its weights do not fit {type(model).__name__}: {wrong}")
    return model
