"""Early stopping for every recipe: transformers' `EarlyStoppingCallback`, saying when and why it stopped.

The shared `train` step adds it when `--early_stopping_patience` is given (`RecipeTrainingArguments` checks
the flags it needs at parse time). Its count of evaluations without improvement is saved in each checkpoint's
`trainer_state.json` (`ExportableState`) and read back when a run resumes (transformers reads it only with
`restore_callback_states_from_checkpoint`), so a pre-empted run stops at the step it would have stopped at.
"""

import logging

from transformers import EarlyStoppingCallback, TrainerControl, TrainerState, TrainingArguments

logger = logging.getLogger(__name__)


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


def early_stopping_callbacks(args: TrainingArguments) -> list[LoggedEarlyStopping]:
    """The early-stopping callback the run asks for (`early_stopping_patience`), or none."""
    patience = getattr(args, "early_stopping_patience", None)
    if patience is None:
        return []
    return [LoggedEarlyStopping(patience, args.early_stopping_threshold)]
