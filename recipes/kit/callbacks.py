"""The `TrainerCallback`s of the recipes: what a run needs beyond `Trainer` itself, through its public hooks.

- `training_callbacks`: the ones every training run gets (`recipes.kit.trainers.RecipeTrainer` attaches them).
  `LoggedEarlyStopping` is transformers' `EarlyStoppingCallback` (with `--early_stopping_patience`;
  `RecipeTrainingArguments` checks the flags it needs at parse time) saying when and why it stopped; its count
  of evaluations without improvement is saved in each checkpoint's `trainer_state.json` (`ExportableState`) and
  read back when a run resumes (transformers reads it only with `restore_callback_states_from_checkpoint`), so a
  pre-empted run stops at the step it would have stopped at. `ParameterShareLogger` logs how many parameter
  values each process holds: the whole model under DDP, about 1/N of it under FSDP. `TokenizerInCheckpoints`
  writes the tokenizer and config into a checkpoint that lacks them (FSDP with sharded state), so a resumed run
  finds the tokenizer it trained with.
- `RngStatesOfAnotherCount`: `Trainer` saves its RNG states per process (`rng_state.pth` on one process,
  `rng_state_<process>.pth` on several) and, resumed on another number of processes, finds none of its own and
  restores none, saying so only at INFO level (which the recipes do not show). Dropout masks then differ from a
  resume on the original count; without dropout the recipes draw nothing from those generators and the resume is
  exact (tests/recipes/test_resume_other_count.py). It says so in one warning line.
- `RankStateCallback`: per-process state that `Trainer` does not checkpoint. A Transformer-XL run carries each
  stream's memory from step to step; an NCE run draws its noise from a per-process generator
  (`noise_generator_state`). Neither is in the model's `state_dict` nor in `Trainer`'s RNG states, so without it
  a resumed run would restart its memory empty or redraw another run's noise. It writes the state into each
  checkpoint folder (`output_dir/checkpoint-<global_step>`, the layout `Trainer` documents; not a
  hyperparameter-search trial's folder) as one safetensors file per process (`on_save`), and puts it back when
  the run resumes (`on_train_begin`, after `Trainer` has loaded the weights and its state, before the first
  step): from the checkpoint named by `resume_from_checkpoint` (which the run lifecycle sets), else
  `output_dir/checkpoint-<global_step>` when the loaded state is past step 0. A checkpoint without the file
  (an older run) resumes without it: memory empty, noise from its seed. One written by another number of
  processes is laid out per process: where the state is rows of the global batch (the memory of each stream), the
  callback's `reshard` gives this process its rows of it and the run continues exactly; where it cannot (the noise
  generators, seeded per process; memory of another global batch), it is not restored, and a warning line names
  both counts and what the run does instead.
"""

import glob
import logging
import os
from collections.abc import Callable

import torch
from accelerate.utils import gather_object
from safetensors.torch import load_file, save_file
from torch.distributed.tensor import DTensor
from transformers import EarlyStoppingCallback, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)


def training_callbacks(args: TrainingArguments) -> list[TrainerCallback]:
    """The callbacks of a training run with `args`: the parameter share, the tokenizer in checkpoints, the RNG
    states of another process count, and early stopping when `early_stopping_patience` is given."""
    callbacks: list[TrainerCallback] = [ParameterShareLogger(), TokenizerInCheckpoints(), RngStatesOfAnotherCount()]
    patience = getattr(args, "early_stopping_patience", None)  # plain TrainingArguments (library use) lack it
    if patience is not None:
        callbacks.append(LoggedEarlyStopping(patience, args.early_stopping_threshold))
    return callbacks


class LoggedEarlyStopping(EarlyStoppingCallback):
    """`EarlyStoppingCallback` that logs the step it stopped at, the metric's last value and the best one."""

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        super().on_train_begin(args, state, control, **kwargs)
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if state.global_step > 0 and isinstance(saved, dict):  # resumed: the count where the checkpoint left it
            self.early_stopping_patience_counter = saved["attributes"]["early_stopping_patience_counter"]

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float],
        **kwargs,
    ) -> None:
        super().on_evaluate(args, state, control, metrics=metrics, **kwargs)
        if self.early_stopping_patience_counter < self.early_stopping_patience:
            return
        name = args.metric_for_best_model
        name = name if name.startswith("eval_") else f"eval_{name}"
        logger.info(
            "early stopping at step %d: %s is %s, not better than the best, %s (step %s), by more than %g for "
            "%d evaluations in a row (early_stopping_patience %d)",
            state.global_step,
            name,
            metrics.get(name),
            state.best_metric,
            state.best_global_step,
            self.early_stopping_threshold,
            self.early_stopping_patience_counter,
            self.early_stopping_patience,
        )


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


def resumed_checkpoint(args: TrainingArguments, state: TrainerState) -> str | None:
    """The checkpoint a run resumes from: `resume_from_checkpoint` (which the run lifecycle sets), else
    `output_dir/checkpoint-<global_step>` when the loaded state is past step 0; `None` for a new run."""
    if args.resume_from_checkpoint:
        return args.resume_from_checkpoint
    if state.global_step > 0:
        return os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
    return None


class RngStatesOfAnotherCount(TrainerCallback):
    """Warns in one line, from the main process, when the checkpoint a run resumes from holds the RNG states of
    another number of processes, which `Trainer` does not restore (module docstring)."""

    def on_train_begin(self, args, state, control, **kwargs):
        checkpoint_dir = resumed_checkpoint(args, state)
        if not checkpoint_dir or args.process_index != 0:
            return
        written_by = len(glob.glob(os.path.join(glob.escape(checkpoint_dir), "rng_state_*.pth")))
        written_by = written_by or int(os.path.isfile(os.path.join(checkpoint_dir, "rng_state.pth")))
        if written_by and written_by != args.world_size:
            logger.warning(
                "%s holds the RNG states of %d process(es), this run has %d: not restored; dropout draws other masks "
                "than a resume on %d would (without dropout, the recipes' runs are the same)",
                checkpoint_dir,
                written_by,
                args.world_size,
                written_by,
            )


TensorState = dict[str, torch.Tensor]


class RankStateCallback(TrainerCallback):
    """Saves `get_state()` into every checkpoint and restores it with `set_state` on resume.

    `name` names the file (`{name}_rank{process_index}.safetensors`); `set_state` receives CPU tensors and
    puts them where they belong; `get_state` may return `None` when there is nothing to save yet. A checkpoint
    written by another number of processes: `reshard`, when given, receives every writer's state (in process order)
    and returns this process's share, or `None` when the state does not fit this run; what it returns is restored,
    with one info line naming both counts. Otherwise nothing is restored: one warning line names both counts and
    what the run does instead (`on_other_layout`, e.g. "each process starts with empty memory").
    """

    def __init__(
        self,
        name: str,
        *,
        get_state: Callable[[], TensorState | None],
        set_state: Callable[[TensorState], None],
        on_other_layout: str,
        reshard: Callable[[list[TensorState]], TensorState | None] | None = None,
    ) -> None:
        self.name = name
        self.get_state = get_state
        self.set_state = set_state
        self.on_other_layout = on_other_layout
        self.reshard = reshard

    def state_file(self, checkpoint_dir: str, process_index: int | str) -> str:
        return os.path.join(checkpoint_dir, f"{self.name}_rank{process_index}.safetensors")

    def on_train_begin(self, args, state, control, **kwargs):
        checkpoint_dir = resumed_checkpoint(args, state)
        if not checkpoint_dir:
            return
        written_by = len(glob.glob(self.state_file(glob.escape(checkpoint_dir), "*")))
        if written_by and written_by != args.world_size:
            self.restore_other_layout(checkpoint_dir, written_by, args)
            return
        path = self.state_file(checkpoint_dir, args.process_index)
        if os.path.isfile(path):
            self.set_state(load_file(path))  # on the CPU: `set_state` places it

    def restore_other_layout(self, checkpoint_dir: str, written_by: int, args: TrainingArguments) -> None:
        """Restores this process's share (`reshard`) of the state `written_by` processes wrote, or nothing; says
        which in one line from the main process."""
        share = None
        if self.reshard is not None:
            share = self.reshard([load_file(self.state_file(checkpoint_dir, index)) for index in range(written_by)])
        if share is not None:
            self.set_state(share)
        outcome = "re-split over this run's processes" if share is not None else f"not restored; {self.on_other_layout}"
        if args.process_index == 0:
            log = logger.info if share is not None else logger.warning
            log(
                "%s holds the %s of %d process(es), this run has %d: %s",
                checkpoint_dir,
                self.name,
                written_by,
                args.world_size,
                outcome,
            )

    def on_save(self, args, state, control, **kwargs):
        tensors = self.get_state()
        if tensors:
            checkpoint_dir = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            os.makedirs(checkpoint_dir, exist_ok=True)
            save_file(
                {k: v.contiguous() for k, v in tensors.items()}, self.state_file(checkpoint_dir, args.process_index)
            )


def noise_generator_state(model: torch.nn.Module) -> RankStateCallback:
    """A `RankStateCallback` for the private noise generator (`model.noise_generator`) of a model trained with
    sampled noise (the NCE LM, Transformer-XL with `nce` / `ranking`): module docstring."""
    return RankStateCallback(
        "noise_generator",
        get_state=lambda: {"state": model.noise_generator.get_state()},
        set_state=lambda tensors: model.noise_generator.set_state(tensors["state"]),
        on_other_layout="each process draws its noise from its seed again (not the noise the first run would draw)",
    )
