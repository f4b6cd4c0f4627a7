"""What an `accelerate launch` asks of this machine, checked before any work, so that a launch never hangs.

`accelerate launch --config_file CONFIG` passes the config to the recipe's processes as environment variables
(`ACCELERATE_USE_DEEPSPEED`, `ACCELERATE_MIXED_PRECISION`, `ACCELERATE_USE_CPU`, ...). Two of the shipped configs
cannot do what they say on a machine without a CUDA GPU:
- DeepSpeed (`zero2.yaml`, `zero3.yaml`): with DeepSpeed 0.19.8 installed on this CPU machine a launch printed
  nothing for 400 s before it was killed (issue #32). The run is refused in one line when the arguments are parsed
  (`check_launch_fits_machine`). Without DeepSpeed installed, accelerate's launcher itself stops first, with its
  own `ImportError` ("DeepSpeed is not installed"), before any recipe code runs.
- The GPU configs (`single_gpu.yaml`, `ddp.yaml`, `fsdp.yaml`: bf16 mixed precision) run on the CPU processes in
  float32 (the recipes default `use_cpu` to true without an accelerator), which is fine for trying a recipe but
  not what the config says: `gpu_config_on_cpu` is the line that says so, logged first in every run.
"""

import os

import torch

from recipes.kit.errors import ConfigError

#: The mixed precisions that accelerate's configs ask of a GPU.
GPU_PRECISIONS = ("bf16", "fp16")


def check_launch_fits_machine() -> None:
    """Raises `ConfigError` when the launch asks for DeepSpeed and this machine has no CUDA GPU."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true" and not torch.cuda.is_available():
        raise ConfigError(
            "the accelerate config asks for DeepSpeed, which needs CUDA GPUs, and this machine has none: launch with "
            "recipes/accelerate_configs/cpu_multi.yaml (DDP) or fsdp_cpu.yaml (FSDP2) on CPU processes"
        )


def gpu_config_on_cpu() -> str | None:
    """The line that says a launch configured for a GPU (`mixed_precision` bf16 / fp16, or `use_cpu` false given)
    runs on the CPU, in float32, because this machine has no accelerator; None otherwise."""
    if torch.accelerator.is_available():
        return None
    precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if precision not in GPU_PRECISIONS and os.environ.get("ACCELERATE_USE_CPU", "").lower() != "false":
        return None
    asked = f"mixed_precision {precision}" if precision in GPU_PRECISIONS else "use_cpu false"
    return (
        f"the accelerate config asks for a GPU ({asked}), and this machine has none: the run uses the CPU, in "
        "float32 (recipes/accelerate_configs/cpu_multi.yaml or fsdp_cpu.yaml say so on purpose)"
    )
