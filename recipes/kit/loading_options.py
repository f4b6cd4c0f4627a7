"""How every recipe loads what `model_name_or_path` and `tokenizer_name` name: the loading fields of
`ModelArguments` (`dtype`, `attn_implementation`, `model_revision`, `trust_remote_code`, `load_in_4bit` /
`load_in_8bit` and the 4-bit settings) turned into the keyword arguments of transformers' loaders, and the checks
of those fields against this machine and the run, made when the arguments are parsed.

k-bit loading quantises the base weights with bitsandbytes (an optional extra: `pip install
".[quantization]"`) and trains LoRA adapters on top of them: QLoRA. A quantised model cannot be trained
without adapters (its quantised weights cannot learn), so such a run is refused when the arguments are parsed; nor
can its adapters be merged on save: merging re-quantises the sum, losing the adapters' precision, and the folder
would need bitsandbytes to load. The 4-bit matmuls compute in `bnb_4bit_compute_dtype`, by default the `dtype` of
the rest of the model (float32 without one).
"""

import importlib.util
from typing import Any

import torch
from accelerate import PartialState
from transformers import BitsAndBytesConfig, PreTrainedModel, TrainingArguments
from transformers.utils import is_flash_attn_2_available

from recipes.kit.arguments import COMPUTE_DTYPES, LoraArguments, ModelArguments
from recipes.kit.errors import ConfigError


def check_loading_environment(model_args: ModelArguments) -> None:
    """Checks that this machine has what the loading fields need.

    Raises:
        ConfigError: no flash-attn for `attn_implementation flash_attention_2`, or no bitsandbytes for
            `load_in_4bit` / `load_in_8bit`, naming the field and the package.
    """
    if model_args.attn_implementation == "flash_attention_2" and not is_flash_attn_2_available():
        raise ConfigError(
            "attn_implementation flash_attention_2: the flash-attn package is not installed (it needs a CUDA GPU); "
            "use sdpa or eager"
        )
    flag = model_args.kbit_flag
    if flag and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"{flag} needs bitsandbytes: pip install '.[quantization]' (or pip install bitsandbytes)")


def check_kbit_training(model_args: ModelArguments, lora_args: LoraArguments | None, *, do_train: bool) -> None:
    """Checks that a k-bit model is trained with LoRA adapters, saved unmerged (module docstring).

    Args:
        lora_args: None for a recipe without adapters.
    Raises:
        ConfigError: a k-bit model trained without `use_lora`, or with `merge_lora_on_save`.
    """
    flag = model_args.kbit_flag
    if flag is None or not do_train:
        return
    if lora_args is None or not lora_args.use_lora:
        offer = "set use_lora true" if lora_args is not None else "this recipe has no LoRA adapters"
        raise ConfigError(f"{flag} trains adapters on frozen quantised weights (QLoRA): {offer}, or drop {flag}")
    if lora_args.merge_lora_on_save:
        raise ConfigError(
            f"{flag} with merge_lora_on_save true would merge the adapters into quantised weights (lossy): set "
            "merge_lora_on_save false to save the adapters, then merge them into the unquantised base"
        )


def hub_kwargs(model_args: ModelArguments) -> dict[str, Any]:
    """What every read of a checkpoint, its config or its tokenizer takes: the revision, and whether the code
    in the repository may run (`trust_remote_code`)."""
    return {"revision": model_args.model_revision, "trust_remote_code": model_args.trust_remote_code}


def pretrained_kwargs(model_args: ModelArguments) -> dict[str, Any]:
    """The keyword arguments of a model's `from_pretrained`: `hub_kwargs`, then `dtype`,
    `attn_implementation` and `quantization_config` when set (else transformers' defaults: float32, the
    model's own attention, no quantisation); a quantised model also gets `kbit_device_map`."""
    kwargs = hub_kwargs(model_args) | new_model_kwargs(model_args)
    if model_args.dtype == "auto":
        kwargs["dtype"] = "auto"
    quantization = quantization_config(model_args)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs["device_map"] = kbit_device_map()
    return kwargs


def kbit_device_map() -> dict[str, int | str]:
    """The whole quantised model on this process's own accelerator (`{"": local_process_index}`, as TRL loads
    k-bit models), or on the CPU without one. Without a `device_map`, bitsandbytes quantises onto
    `torch.cuda.current_device()`, which is not each process's own device unless something set it."""
    if torch.cuda.is_available() or torch.xpu.is_available():
        return {"": PartialState().local_process_index}
    return {"": "cpu"}


def new_model_kwargs(model_args: ModelArguments) -> dict[str, Any]:
    """The keyword arguments of `from_config` for a model built from a config: `dtype` (`auto`: float32, as
    there is no checkpoint to follow) and `attn_implementation`, when set."""
    kwargs: dict[str, Any] = {}
    if model_args.dtype not in (None, "auto"):
        kwargs["dtype"] = getattr(torch, model_args.dtype)
    if model_args.attn_implementation is not None:
        kwargs["attn_implementation"] = model_args.attn_implementation
    return kwargs


def quantization_config(model_args: ModelArguments) -> BitsAndBytesConfig | None:
    """The bitsandbytes config of `load_in_4bit` / `load_in_8bit` (module docstring), or None."""
    if model_args.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    if not model_args.load_in_4bit:
        return None
    compute = model_args.bnb_4bit_compute_dtype or (model_args.dtype if model_args.dtype in COMPUTE_DTYPES else None)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=model_args.bnb_4bit_quant_type,
        bnb_4bit_compute_dtype=getattr(torch, compute or "float32"),
        bnb_4bit_use_double_quant=model_args.bnb_4bit_use_double_quant,
    )


def prepare_for_kbit_training(model: PreTrainedModel, training_args: TrainingArguments) -> PreTrainedModel:
    """A quantised model made ready for adapters (PEFT's `prepare_model_for_kbit_training`: base frozen, norms
    and output layer in float32, gradients reaching the inputs, gradient checkpointing as `training_args`
    asks); any other model unchanged. Call it before wrapping the model in LoRA adapters. A model holding a
    quantised model (the sentiment classifier's encoder) is prepared as a whole."""
    if not any(getattr(module, "hf_quantizer", None) is not None for module in model.modules()):
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=training_args.gradient_checkpointing,
        gradient_checkpointing_kwargs=training_args.gradient_checkpointing_kwargs,
    )
