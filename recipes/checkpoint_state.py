"""Per-process state that `Trainer` does not checkpoint, carried through checkpoints with the public
callback API.

A Transformer-XL run carries each stream's memory from step to step; an NCE run draws its noise from a
per-process generator. Neither is in the model's `state_dict` nor in `Trainer`'s RNG states, so without
this a resumed run would restart its memory empty or redraw another run's noise. `RankStateCallback`
writes the state into each checkpoint folder (`output_dir/checkpoint-<global_step>`, the layout
`Trainer` documents; not a hyperparameter-search trial's folder) as one safetensors file per process
(`on_save`), and puts it back when the run resumes from a checkpoint (`on_train_begin`, after `Trainer`
has loaded the weights and its state, before the first step): the checkpoint named by
`resume_from_checkpoint`, else `output_dir/checkpoint-<global_step>` when the loaded state is past step 0,
which is where `recipes.common.checkpoint_to_resume` resumes from. A checkpoint without the file (written by another
number of processes, or by an older run) resumes without it: memory empty, noise from its seed.
"""

import os
from collections.abc import Callable

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

TensorState = dict[str, torch.Tensor]


class RankStateCallback(TrainerCallback):
    """Saves `get_state()` into every checkpoint and restores it with `set_state` on resume.

    `name` names the file (`{name}_rank{process_index}.safetensors`); `set_state` receives CPU tensors and
    puts them where they belong; `get_state` may return `None` when there is nothing to save yet.
    """

    def __init__(
        self, name: str, *, get_state: Callable[[], TensorState | None], set_state: Callable[[TensorState], None]
    ) -> None:
        self.name = name
        self.get_state = get_state
        self.set_state = set_state

    def state_file(self, checkpoint_dir: str, process_index: int) -> str:
        return os.path.join(checkpoint_dir, f"{self.name}_rank{process_index}.safetensors")

    def on_train_begin(self, args, state, control, **kwargs):
        checkpoint_dir = args.resume_from_checkpoint
        if not checkpoint_dir and state.global_step > 0:
            checkpoint_dir = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if checkpoint_dir:
            path = self.state_file(checkpoint_dir, args.process_index)
            if os.path.isfile(path):
                self.set_state(load_file(path))  # on the CPU: `set_state` places it

    def on_save(self, args, state, control, **kwargs):
        tensors = self.get_state()
        if tensors:
            checkpoint_dir = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            os.makedirs(checkpoint_dir, exist_ok=True)
            save_file(
                {k: v.contiguous() for k, v in tensors.items()}, self.state_file(checkpoint_dir, args.process_index)
            )


def noise_generator_state(model: torch.nn.Module) -> RankStateCallback:
    """Checkpoints the private noise generator of a model trained with sampled noise (`model.noise_generator`,
    the NCE LM and Transformer-XL with `nce` / `ranking`), so a resumed run draws the noise the
    uninterrupted run would have drawn."""
    return RankStateCallback(
        "noise_generator",
        get_state=lambda: {"state": model.noise_generator.get_state()},
        set_state=lambda tensors: model.noise_generator.set_state(tensors["state"]),
    )
