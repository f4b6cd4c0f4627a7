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
- `ProcessCountInCheckpoints`: records in each checkpoint how many processes wrote it
  (`recipes.kit.lifecycle.PROCESS_COUNT_FILE`) and, when a run resumes from a checkpoint of another number of
  processes, says in ONE line from the main process what each kind of per-process state became: each
  `RankStateCallback`'s phrase (re-split, or not restored and why), then `Trainer`'s RNG states. `Trainer` saves
  those per process (`rng_state.pth` on one process, `rng_state_<process>.pth` on several) and on another count
  restores at most each process's own index (saying so only at INFO level, which the recipes do not show), so
  dropout draws other masks than a resume on the original count; without dropout the recipes draw nothing from
  them and the resume is exact (tests/recipes/test_resume_other_count.py). A warning when anything is not
  restored, info when all is re-laid out exactly; nothing on the same count. The line comes at the first
  `on_epoch_begin` of the run, after every callback's `on_train_begin` (where the state is restored) whatever their
  order.
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
  generators, seeded per process; memory of another global batch), it is not restored. It records which
  (`other_count_outcome`) for `ProcessCountInCheckpoints`'s line.
"""

import glob
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from accelerate.utils import gather_object
from safetensors.torch import load_file, save_file
from torch.distributed.tensor import DTensor
from transformers import EarlyStoppingCallback, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from recipes.kit.lifecycle import PROCESS_COUNT_FILE, checkpoint_processes

logger = logging.getLogger(__name__)


def training_callbacks(args: TrainingArguments, trainer_callbacks: list[TrainerCallback]) -> list[TrainerCallback]:
    """The callbacks of a training run with `args`: the parameter share, the tokenizer in checkpoints, the process
    count in checkpoints (reading the `RankStateCallback`s among `trainer_callbacks`, the trainer's own list, which
    it reads when it announces), and early stopping when `early_stopping_patience` is given."""
    callbacks: list[TrainerCallback] = [
        ParameterShareLogger(),
        TokenizerInCheckpoints(),
        ProcessCountInCheckpoints(trainer_callbacks),
    ]
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


class Relayout(NamedTuple):
    """What a resume on another number of processes did with one kind of per-process state: `phrase` says it
    (`Transformer-XL memory re-split over this run's processes`); `exact` is whether the run has it as a resume on
    the original count would."""

    phrase: str
    exact: bool


def other_count_line(
    checkpoint_dir: str, *, written_by: int, world_size: int, outcomes: list[Relayout]
) -> tuple[int, str]:
    """The one line of a resume from `checkpoint_dir`, written by `written_by` processes, on `world_size`: its
    logging level (WARNING when an outcome is not exact, else INFO) and its text, e.g. `.../checkpoint-4 was written
    by 2 processes, this run has 1: Transformer-XL memory re-split over this run's processes; Trainer's
    per-process RNG states not carried over (...)`."""
    said = "; ".join(outcome.phrase for outcome in outcomes) or "no per-process state to re-lay out"
    level = logging.INFO if all(outcome.exact for outcome in outcomes) else logging.WARNING
    return level, f"{checkpoint_dir} was written by {processes(written_by)}, this run has {world_size}: {said}"


def processes(count: int) -> str:
    """`1 process`, `2 processes`."""
    return f"{count} process" if count == 1 else f"{count} processes"


class ProcessCountInCheckpoints(TrainerCallback):
    """Writes `PROCESS_COUNT_FILE` into each checkpoint from the main process; on a resume from a checkpoint of
    another number of processes, logs `other_count_line` from the main process: the outcomes of the
    `RankStateCallback`s among `trainer_callbacks` (the trainer's list, read when the line is logged), then
    `Trainer`'s RNG states when the checkpoint holds them (module docstring)."""

    def __init__(self, trainer_callbacks: list[TrainerCallback]) -> None:
        self.trainer_callbacks = trainer_callbacks
        self.resumed_from: tuple[str, int] | None = None  # a checkpoint of another count, and its count

    def on_save(self, args, state, control, **kwargs):
        checkpoint_dir = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if args.should_save:
            os.makedirs(checkpoint_dir, exist_ok=True)
            with open(os.path.join(checkpoint_dir, PROCESS_COUNT_FILE), "w", encoding="utf-8") as file:
                json.dump({"num_processes": args.world_size}, file)

    def on_train_begin(self, args, state, control, **kwargs):
        checkpoint_dir = resumed_checkpoint(args, state)
        written_by = (
            checkpoint_processes(Path(checkpoint_dir)) if checkpoint_dir and os.path.isdir(checkpoint_dir) else None
        )
        self.resumed_from = (checkpoint_dir, written_by) if written_by and written_by != args.world_size else None

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.resumed_from is None:
            return
        (checkpoint_dir, written_by), self.resumed_from = self.resumed_from, None
        if args.process_index != 0:
            return
        outcomes = [
            callback.other_count_outcome
            for callback in self.trainer_callbacks
            if isinstance(callback, RankStateCallback) and callback.other_count_outcome is not None
        ]
        if glob.glob(os.path.join(glob.escape(checkpoint_dir), "rng_state*.pth")):
            outcomes.append(
                Relayout(
                    "Trainer's per-process RNG states not carried over (dropout draws other masks than a resume on "
                    f"{processes(written_by)} would)",
                    exact=False,
                )
            )
        logger.log(
            *other_count_line(checkpoint_dir, written_by=written_by, world_size=args.world_size, outcomes=outcomes)
        )


TensorState = dict[str, torch.Tensor]


class RankStateCallback(TrainerCallback):
    """Saves `get_state()` into every checkpoint and restores it with `set_state` on resume.

    `name` names the file (`{name}_rank{process_index}.safetensors`), `what` the state in words (`Transformer-XL
    memory`); `set_state` receives CPU tensors and puts them where they belong; `get_state` may return `None` when
    there is nothing to save yet. A checkpoint written by another number of processes
    (`recipes.kit.lifecycle.checkpoint_processes`): `reshard`, when given, receives every writer's state (in process
    order) and returns this process's share, or `None` when the state does not fit this run; what it returns is
    restored. Otherwise nothing is restored and the run does what `on_other_layout` says (e.g. "each process starts
    with empty memory"). Either way `other_count_outcome` records it (`None` on the same count or a new run), for
    `ProcessCountInCheckpoints`'s line.
    """

    def __init__(
        self,
        name: str,
        *,
        what: str,
        get_state: Callable[[], TensorState | None],
        set_state: Callable[[TensorState], None],
        on_other_layout: str,
        reshard: Callable[[list[TensorState]], TensorState | None] | None = None,
    ) -> None:
        self.name = name
        self.what = what
        self.get_state = get_state
        self.set_state = set_state
        self.on_other_layout = on_other_layout
        self.reshard = reshard
        self.other_count_outcome: Relayout | None = None

    def state_file(self, checkpoint_dir: str, process_index: int | str) -> str:
        return os.path.join(checkpoint_dir, f"{self.name}_rank{process_index}.safetensors")

    def on_train_begin(self, args, state, control, **kwargs):
        self.other_count_outcome = None
        checkpoint_dir = resumed_checkpoint(args, state)
        if not checkpoint_dir or not os.path.isfile(self.state_file(checkpoint_dir, 0)):
            return  # a new run, or a checkpoint without this state (an older run): nothing to restore
        written_by = checkpoint_processes(Path(checkpoint_dir))
        if written_by != args.world_size:
            self.other_count_outcome = self.restore_other_layout(checkpoint_dir, written_by)
            return
        path = self.state_file(checkpoint_dir, args.process_index)
        if os.path.isfile(path):
            self.set_state(load_file(path))  # on the CPU: `set_state` places it

    def restore_other_layout(self, checkpoint_dir: str, written_by: int) -> Relayout:
        """Restores this process's share (`reshard`) of the state `written_by` processes wrote, or nothing; returns
        which."""
        share = None
        if self.reshard is not None:
            share = self.reshard([load_file(self.state_file(checkpoint_dir, index)) for index in range(written_by)])
        if share is None:
            return Relayout(f"{self.what} not restored ({self.on_other_layout})", exact=False)
        self.set_state(share)
        return Relayout(f"{self.what} re-split over this run's processes", exact=True)

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
        what="noise generators",
        get_state=lambda: {"state": model.noise_generator.get_state()},
        set_state=lambda tensors: model.noise_generator.set_state(tensors["state"]),
        on_other_layout="each process draws its noise from its seed again, not the noise the first run would draw",
    )
