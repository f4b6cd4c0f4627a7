"""LoRA adapters saved unmerged (`merge_lora_on_save false`): a folder that loads wherever a merged one does.

Such a folder holds what PEFT saves (`adapter_config.json`, `adapter_model.safetensors`: the LoRA weights and,
for sentiment, the trained head as `modules_to_save`), the tokenizer, the model's code and the card. The base
model the adapters apply to is named by `base_model_name_or_path` in `adapter_config.json`:

- the checkpoint the run loaded, when it loaded it unchanged (closed-book QA from a checkpoint without
  `config_overrides`): its Hub id, or a local folder as an absolute path, so the folder stays small;
- otherwise no checkpoint holds the base (a model built from a config, sentiment's encoder under a new head, a
  config changed by `config_overrides`): it is saved in the folder's `base/` (weights, config, code, tokenizer),
  named by its absolute path.

So PEFT's `AutoPeftModelForSequenceClassification` / `AutoPeftModelForCausalLM` and `pipeline(model=DIR)` load
it on this machine; the recipes (`--do_train false --model_name_or_path DIR`) and `python -m
recipes.merge_adapter DIR OUT_DIR` read `base/` wherever the folder has been moved since. A base saved in `base/`
is the model without its LoRA layers, with the tokenizer (`pipeline(model=DIR)` reads it there); its
`modules_to_save` copies are the trained ones, which the adapters hold too. A model that generates gets the run's
`generation_config.json` beside the adapters (a named checkpoint has its own).

An adapter folder has no `config.json` of its own; a checkpoint of a LoRA run does (the base's, written by
`recipes.kit.callbacks.TokenizerInCheckpoints`) and is read as a model folder by the run lifecycle.
`load_adapter_model` refuses weights of the base or of the adapters that do not fit the model: PEFT itself only
warns of missing adapter weights and leaves them as initialised.

The adapters are added by `add_lora_adapters` (the Model step of the recipes that fine-tune a pretrained model)
and settled by `settle_adapters` before the final save: merged into the base weights (`merge_lora_on_save`, a
plain model that loads without peft; `trainer.model` and `trainer.model_wrapped` are both replaced, as
`save_model` reads one or the other depending on how the run was launched) or saved as such a folder.
"""

import copy
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from transformers import PreTrainedModel, Trainer, TrainingArguments

from recipes.kit.arguments import LoraArguments, ModelArguments
from recipes.kit.errors import ConfigError
from recipes.kit.loading_options import prepare_for_kbit_training

if TYPE_CHECKING:
    from peft import PeftModel

#: The file that makes a folder an adapter folder (PEFT's `CONFIG_NAME`).
ADAPTER_CONFIG = "adapter_config.json"
#: The adapters' weights (PEFT's `SAFETENSORS_WEIGHTS_NAME`).
ADAPTER_WEIGHTS = "adapter_model.safetensors"
#: Where a base model that no checkpoint holds is saved, inside the adapter folder.
BASE_FOLDER = "base"


def is_adapter_folder(path: str | os.PathLike | None) -> bool:
    """Whether `path` is a local folder of adapters without a model of its own (no `config.json`)."""
    return bool(path) and (Path(path) / ADAPTER_CONFIG).is_file() and not (Path(path) / "config.json").is_file()


def adapter_base(path: str | os.PathLike) -> str:
    """The base model of the adapter folder `path`: its `base/` when it has one (wherever the folder now lies),
    else the `base_model_name_or_path` it names.

    Raises:
        ConfigError: the folder has neither.
    """
    if (Path(path) / BASE_FOLDER / "config.json").is_file():
        return str(Path(path) / BASE_FOLDER)
    base = json.loads((Path(path) / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{path}: {ADAPTER_CONFIG} names no base model (base_model_name_or_path), and no base/")
    return base


def load_adapter_model(model_class: type, path: str | os.PathLike, **loading: object) -> "PeftModel":
    """The adapter folder `path` on its base (`adapter_base`), as the run that trained it held it: the base
    loaded by `model_class.from_pretrained(base, **loading)`, then the adapters by PEFT (frozen).

    Raises:
        ConfigError: the folder names no base, or weights of the base or of the adapters do not fit the model
            (missing, unexpected or mis-shaped), naming them.
    """
    from peft import PeftModel, get_peft_model_state_dict  # imported when used: peft is needed only with LoRA

    base, loading_info = model_class.from_pretrained(adapter_base(path), output_loading_info=True, **loading)
    model = PeftModel.from_pretrained(base, str(path))
    with safe_open(Path(path) / ADAPTER_WEIGHTS, "pt") as weights:
        saved = set(weights.keys())
    expected = set(get_peft_model_state_dict(model))
    kinds = ("missing_keys", "unexpected_keys", "mismatched_keys")
    problems = {f"base {kind}": loading_info.get(kind) for kind in kinds}
    problems |= {"adapter missing_keys": expected - saved, "adapter unexpected_keys": saved - expected}
    problems = {kind: sorted(map(str, keys)) for kind, keys in problems.items() if keys}
    if problems:
        raise ConfigError(f"{path}: its weights do not fit {type(base).__name__} from {adapter_base(path)}: {problems}")
    return model


def add_lora_adapters(
    model: PreTrainedModel,
    lora_args: LoraArguments,
    training_args: TrainingArguments,
    *,
    task_type: str,
    default_targets: list[str] | str,
    **lora_kwargs: Any,
) -> torch.nn.Module:
    """`model` with LoRA adapters when the run trains with `use_lora` (a k-bit model prepared for them first:
    `prepare_for_kbit_training`), else `model` unchanged. `task_type`: PEFT's (`SEQ_CLS`, `CAUSAL_LM`);
    `default_targets`: the modules that get adapters when `lora_target_modules` is empty; `lora_kwargs` go to
    `peft.LoraConfig` (`modules_to_save`, joined by `lora_modules_to_save`)."""
    if not (training_args.do_train and lora_args.use_lora):
        return model
    from peft import LoraConfig, get_peft_model

    modules_to_save = [*lora_kwargs.pop("modules_to_save", []), *lora_args.lora_modules_to_save]
    lora = LoraConfig(
        task_type=task_type,
        r=lora_args.lora_r,
        lora_alpha=lora_args.lora_alpha,
        lora_dropout=lora_args.lora_dropout,
        target_modules=lora_args.lora_target_modules or default_targets,
        use_dora=lora_args.use_dora,
        use_rslora=lora_args.use_rslora,
        modules_to_save=modules_to_save or None,
        **lora_kwargs,
    )
    return get_peft_model(prepare_for_kbit_training(model, training_args), lora)


def settle_adapters(trainer: Trainer, lora_args: LoraArguments, model_args: ModelArguments) -> None:
    """Prepares the adapters of a run with `use_lora` for the final save (module docstring): merged into the base
    weights with `merge_lora_on_save`, else their base named or saved (`name_or_save_base`): the checkpoint itself
    when the run loaded it unchanged (no recipe field, no `config_overrides`). Does nothing without LoRA."""
    if not lora_args.use_lora:
        return
    if lora_args.merge_lora_on_save:
        trainer.model = trainer.model_wrapped = trainer.model.merge_and_unload()
        return
    loaded_unchanged = not model_args.recipe_config_fields() and not model_args.config_overrides
    name_or_save_base(trainer, model_args.model_name_or_path if loaded_unchanged else None)


def name_or_save_base(trainer: Trainer, base_checkpoint: str | None) -> None:
    """Sets the adapters' `base_model_name_or_path` (what PEFT will write) to `base_checkpoint` (a local folder
    made absolute), or, when it is None, to `output_dir/base`, saving the base there now (module docstring)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    output_dir = trainer.args.output_dir
    if base_checkpoint is not None:
        name = os.path.abspath(base_checkpoint) if os.path.isdir(base_checkpoint) else base_checkpoint
    else:
        name = os.path.abspath(os.path.join(output_dir, BASE_FOLDER))
    if trainer.args.should_save:  # one writer per folder
        if base_checkpoint is None:
            base: PreTrainedModel = copy.deepcopy(model).unload()  # the trainer's model keeps its adapters
            base.save_pretrained(name)
            if trainer.processing_class is not None:  # `pipeline(model=DIR)` reads the tokenizer from the base
                trainer.processing_class.save_pretrained(name)
        if model.get_base_model().can_generate():
            model.get_base_model().generation_config.save_pretrained(output_dir)
    for config in model.peft_config.values():
        config.base_model_name_or_path = name
