"""Runs on several processes: fully sharded training (FSDP2) on CPU processes too, a final model in one piece,
and a clean exit from the process group.

CPU: `accelerate launch` with `distributed_type: FSDP` and `use_cpu: true` starts the processes over gloo,
but accelerate (1.15) files them as `MULTI_CPU` and only upgrades GPU-like process groups to FSDP, so
`Trainer` silently trains with DDP, although PyTorch's `fully_shard` runs on CPU over gloo.
`shard_on_cpu_processes` files such a group as a data-parallel one (the kind accelerate upgrades) before
`Trainer` builds its `Accelerator`, which then takes its FSDP path: `fully_shard` per layer, sharded
checkpoints. Any other launch is left as it is.

Checkpoints: with sharded state, `Trainer` writes no tokenizer and no config into a checkpoint;
`recipes.kit.callbacks.TokenizerInCheckpoints` writes them.

Saving: with `fsdp_state_dict_type: SHARDED_STATE_DICT` (each process writes its own shard of every
checkpoint) `Trainer.save_model` writes no weights at all. `save_full_model` gathers them into one
`model.safetensors` that the Auto classes load, as transformers' FSDP guide advises, with the model's own
code: `fully_shard` gives the model a class `FSDP<Class>` defined in torch, whose module file
`save_pretrained` would otherwise ship as the model's code (and name in `auto_map`).

Leaving: "terminate called without an active exception" (SIGABRT after a run's work was done, in CI) is a gloo
worker thread killed by the interpreter's exit. A `ProcessGroupGloo` runs each collective on its own threads
(`pt_gloo_runloop`), and such a thread drops a finished collective only after waking its caller; when the tensors are
still Python objects, dropping them takes the GIL. Once Python is finalizing, CPython (3.11) ends a thread that takes
the GIL with `pthread_exit`, whose unwinding through a C++ destructor calls `std::terminate`. Those threads stop only
when the group object is destroyed, and `destroy_process_group` only unregisters it: a finished `Trainer`, kept alive
by reference cycles, still holds it through the DDP reducer, so its threads lived on into the exit. A barrier orders
the collectives, not the threads' dropping of them. So `leave_process_group` collects the garbage first, so that
`destroy_process_group` destroys the group, which joins its threads while Python still runs. FSDP2 holds its group in a
`DeviceMesh` (its private `_pg_registry`, torch 2.13), and DTensor's caches keep the meshes for the life of the
process, so the registries of the meshes still alive are emptied too (no public call releases them; a mesh is of no
use once its group is destroyed). Then no gloo thread is left; a warning says so if one is (some object still holds
the group).
"""

import gc
import logging
import os
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import DistributedType
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule
from transformers import Trainer

logger = logging.getLogger(__name__)


def shard_on_cpu_processes() -> bool:
    """Files a CPU process group launched with an FSDP config (`ACCELERATE_USE_FSDP=true`, set by `accelerate
    launch`) as a data-parallel one, so that `Trainer` shards it (module docstring). Call after `TrainingArguments`
    exists and before `Trainer` is built.

    Returns:
        Whether it switched; any other launch is left as it is.
    """
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


def machine_of(process: int, world_size: int) -> int:
    """The machine that runs process `process` of `world_size`, by the launch's layout: torchrun starts
    `LOCAL_WORLD_SIZE` processes on each machine, machine 0's first (one machine when it is not set)."""
    return process // int(os.environ.get("LOCAL_WORLD_SIZE", world_size))


GLOO_THREAD_NAME = "pt_gloo_runloop"  # the name torch gives a ProcessGroupGloo's worker threads
GROUP_OUTLIVED_WARNING = "the process group outlived destroy_process_group"


def gloo_worker_threads() -> int:
    """The number of this process's threads that are a `ProcessGroupGloo`'s workers (by their name in
    `/proc/self/task`; 0 where there is no such folder)."""
    names = []
    for comm in Path("/proc/self/task").glob("*/comm"):
        try:
            names.append(comm.read_text().strip())
        except OSError:  # a thread that ended while we listed them
            continue
    return names.count(GLOO_THREAD_NAME)


def _release_device_mesh_groups() -> None:
    """Drops the process groups that the `DeviceMesh` objects still alive hold (module docstring)."""
    for mesh in [obj for obj in gc.get_objects() if isinstance(obj, DeviceMesh)]:
        getattr(mesh, "_pg_registry", {}).clear()


def leave_process_group(*, wait_for_others: bool = True) -> None:
    """Leaves the process group, if there is one: garbage collected first, then a barrier (`wait_for_others`; a
    process that stops on an error does not wait: the others may never get there), then `destroy_process_group`, then
    the groups that device meshes hold released (module docstring). Logs a warning if gloo worker threads are still
    alive after it: an object still holds the group (a `Trainer` or a model kept in a global), and its threads may
    abort the process at exit."""
    if torch.distributed.is_initialized():
        gc.collect()
        if wait_for_others:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        _release_device_mesh_groups()
        if left := gloo_worker_threads():
            logger.warning(
                "%s: %d gloo worker threads are still alive, so something still holds the group (a Trainer or a "
                "model kept in a global); release it before leaving, or the process may abort at exit",
                GROUP_OUTLIVED_WARNING,
                left,
            )
