"""Evaluation loops the recipes write themselves, and the end they share.

`Trainer.evaluate` gathers every prediction before computing metrics; for a language model that is a
`[tokens, vocab]` logit matrix, for closed-book QA there is nothing to gather until answers are generated.
The recipes' trainers therefore compute their metrics in their own loop (`evaluation_metrics`) and
share the rest through `OwnEvaluationTrainer.evaluate`: unwrap the model, evaluate in eval mode without
gradients, restore train mode, prefix the metric names, log them and call `on_evaluate` (so callbacks,
`load_best_model_at_end` and the loggers see them as they see `Trainer`'s own).
"""

from typing import Any

import torch

from recipes.trainer import RecipeTrainer


class OwnEvaluationTrainer(RecipeTrainer):
    """A `Trainer` whose metrics come from `evaluation_metrics(model, dataset)`; see the module docstring."""

    def evaluation_metrics(self, model: torch.nn.Module, dataset: Any, metric_key_prefix: str) -> dict[str, Any]:
        """Metrics of `model` (unwrapped, in eval mode, no gradients) on `dataset`, already reduced over
        every process and not yet prefixed."""
        raise NotImplementedError

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, Any]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                metrics = self.evaluation_metrics(model, dataset, metric_key_prefix)
        finally:
            model.train(was_training)
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in metrics.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def on_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`batch` with its tensors on this process's device."""
        return {name: value.to(self.args.device) for name, value in batch.items()}
