"""The `Trainer` classes every recipe's trainer extends.

`RecipeTrainer`, for what every recipe shares:
- A training run gets the recipes' callbacks (`recipes.kit.callbacks.training_callbacks`: early stopping with
  `--early_stopping_patience`, the parameters each process holds, a tokenizer and the process count in every
  checkpoint, one line on a resume on another process count); the model's size is logged in one wording for every
  recipe.
- The model card (`recipes.kit.model_card`) is written by the public `create_model_card`, which
  `Trainer.push_to_hub` calls.
- The saved `tokenizer_config.json` holds no key that only describes this machine's loading
  (`local_files_only`, `is_local`, ...: transformers records them when a tokenizer is loaded offline).
- After `load_best_model_at_end`, the metrics files (`train_results.json`, `eval_results.json`, ...) name
  the step of the checkpoint whose weights were kept and evaluated (`best_global_step`).

`OwnEvaluationTrainer`, for the recipes that evaluate in their own loop: `Trainer.evaluate` gathers every
prediction before computing metrics; for a language model that is a `[tokens, vocab]` logit matrix, for
closed-book QA there is nothing to gather until answers are generated. Those trainers compute their metrics in
`evaluation_metrics` and share the rest: unwrap the model, evaluate in eval mode without gradients, restore
train mode, prefix the metric names, log them and call `on_evaluate` (so callbacks, `load_best_model_at_end`
and the loggers see them as they see `Trainer`'s own).
"""

import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from recipes.kit.callbacks import training_callbacks
from recipes.kit.dry_run import DryRunFinished, describe_run
from recipes.kit.model_card import CardInfo, model_card

logger = logging.getLogger(__name__)

#: `tokenizer_config.json` keys that transformers records from how a tokenizer was loaded here.
MACHINE_LOCAL_TOKENIZER_KEYS = ("is_local", "local_files_only", "cache_dir", "token")


class RecipeTrainer(Trainer):
    """A `Trainer` that attaches the recipes' callbacks, writes the recipe's model card, saves publishable tokenizer
    files and names the best checkpoint in its metrics (module docstring). Set `card_info` before the card is made
    (`recipes.kit.run_steps.save_card_and_push`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        training_args = kwargs.get("args")
        dry_run = getattr(training_args, "dry_run", False)
        made_output_dir = dry_run and not os.path.exists(training_args.output_dir)
        if dry_run:  # `Trainer` would create the Hub repository on construction
            training_args.push_to_hub = False
        super().__init__(*args, **kwargs)
        self.card_info: CardInfo | None = None
        init_kwargs = getattr(self.processing_class, "init_kwargs", None)
        for key in MACHINE_LOCAL_TOKENIZER_KEYS if init_kwargs is not None else ():
            init_kwargs.pop(key, None)
        if self.args.do_train:
            for callback in training_callbacks(self.args, self.callback_handler.callbacks):
                self.add_callback(callback)
        parameters = list(self.model.parameters())  # a tied weight is one parameter
        trainable = sum(p.numel() for p in parameters if p.requires_grad)
        logger.info(
            "model %s: %d parameters, %d trainable",
            type(self.model).__name__,
            sum(map(torch.numel, parameters)),
            trainable,
        )
        if dry_run:
            report = describe_run(self)
            if made_output_dir and not os.listdir(self.args.output_dir):  # `Trainer` makes it on construction
                os.rmdir(self.args.output_dir)
            raise DryRunFinished(report)

    def create_model_card(self, tags: str | list[str] | None = None, **kwargs: Any) -> None:
        """Writes README.md from `card_info` (transformers' generic card when the recipe set none); `tags`
        (from `push_to_hub`) are added to the card's."""
        if self.card_info is None:
            return super().create_model_card(tags=tags, **kwargs)
        if not self.is_world_process_zero():
            return None
        extra = [tags] if isinstance(tags, str) else list(tags or [])
        card = model_card(self.card_info, extra_tags=extra, model_name=kwargs.get("model_name"))
        card.save(Path(self.args.output_dir) / "README.md")
        return None

    def save_metrics(self, split: str, metrics: dict[str, float], combined: bool = True) -> None:
        if self.args.load_best_model_at_end and self.state.best_global_step:
            metrics = {**metrics, "best_global_step": self.state.best_global_step}
        super().save_metrics(split, metrics, combined=combined)


class OwnEvaluationTrainer(RecipeTrainer):
    """A `Trainer` whose metrics come from `evaluation_metrics(model, dataset)` (module docstring)."""

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
