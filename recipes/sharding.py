"""Fully sharded training (FSDP2) under `Trainer`: on CPU processes too, and a final model in one piece.

CPU: `accelerate launch` with `distributed_type: FSDP` and `use_cpu: true` starts the processes over gloo,
but accelerate (1.15) files them as `MULTI_CPU` and only upgrades GPU-like process groups to FSDP, so
`Trainer` silently trains with DDP, although PyTorch's `fully_shard` runs on CPU over gloo.
`shard_on_cpu_processes` files such a group as a data-parallel one (the kind accelerate upgrades) before
`Trainer` builds its `Accelerator`, which then takes its FSDP path: `fully_shard` per layer, sharded
checkpoints. Any other launch is left as it is.

Checkpoints: with sharded state, `Trainer` writes no tokenizer and no config into a checkpoint (they come
with the weights `save_model` skips); `TokenizerInCheckpoints` writes them, so a resumed run finds the
tokenizer it trained with (`recipes.common.load_or_train_tokenizer`).

`ParameterShareLogger` logs, as training starts, how many parameter values each process holds: the
whole model under DDP, about 1/N of it under FSDP.

Saving: with `fsdp_state_dict_type: SHARDED_STATE_DICT` (each process writes its own shard of every
checkpoint) `Trainer.save_model` writes no weights at all. `save_full_model` gathers them into one
`model.safetensors` that the Auto classes load, as transformers' FSDP guide advises, with the model's own
code: `fully_shard` gives the model a class `FSDP<Class>` defined in torch, whose module file
`save_pretrained` would otherwise ship as the model's code (and name in `auto_map`).
"""

import logging
import os

import torch
from accelerate import PartialState
from accelerate.utils import DistributedType, gather_object
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)


def shard_on_cpu_processes() -> bool:
    """Lets a CPU process group launched with an FSDP config (`ACCELERATE_USE_FSDP=true`, set by
    `accelerate launch`) train with FSDP instead of DDP. Call after `TrainingArguments` exists and before
    `Trainer` is built. Returns whether it switched."""
    state = PartialState()
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return False
    if state.distributed_type != DistributedType.MULTI_CPU:
        return False
    state.distributed_type = DistributedType.MULTI_GPU  # the shared state, which the next AcceleratorState reads
    logger.info("FSDP on %d CPU processes (gloo)", state.num_processes)
    return True


def save_full_model(trainer: Trainer) -> None:
    """`trainer.save_model()`, with an FSDP model's shards gathered into one unsharded folder (every process
    must call it; the main one writes)."""
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        _name_as_model_class(type(trainer.model))
    trainer.save_model()


def _name_as_model_class(sharded_class: type) -> None:
    """Gives `FSDP<Class>` the module and name of `<Class>`, the model class it subclasses, so that
    `save_pretrained` ships that class's code and names it in `auto_map`."""
    model_class = next(cls for cls in sharded_class.__mro__ if not issubclass(cls, FSDPModule))
    sharded_class.__module__ = model_class.__module__
    sharded_class.__name__, sharded_class.__qualname__ = model_class.__name__, model_class.__qualname__


class ParameterShareLogger(TrainerCallback):
    """Logs, once the model is prepared for training, the parameter values each process holds (a sharded
    parameter counts its local shard) and the model's total, e.g. `parameters held per process: [14577,
    14577] of 29154`."""

    def on_train_begin(self, args, state, control, model: torch.nn.Module | None = None, **kwargs):
        parameters = list(model.parameters())  # a tied weight is one parameter
        held = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in parameters)
        logger.info("parameters held per process: %s of %d", gather_object([held]), sum(p.numel() for p in parameters))


class TokenizerInCheckpoints(TrainerCallback):
    """Saves the tokenizer and the model's config into each checkpoint that lacks them (an FSDP checkpoint
    with sharded state), from the main process."""

    def on_save(self, args, state, control, model=None, processing_class=None, **kwargs):
        checkpoint_dir = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if args.should_save and not os.path.isfile(os.path.join(checkpoint_dir, "config.json")):
            model.config.save_pretrained(checkpoint_dir)
            if processing_class is not None:
                processing_class.save_pretrained(checkpoint_dir)
