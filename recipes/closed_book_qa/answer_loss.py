"""The QA recipe's training loss, with the output layer applied to the answer positions only.

The loss covers the answer and its end token, a few of the ~20 tokens of `question: ...\\nanswer: ...`; yet a
causal LM applies its output layer (50,257 words for GPT-2, about 30% of a GPT-2 124M forward per token) to
every position, and those logits dominate a large batch's activation memory. `QATrainer.compute_loss` asks
the model for the logits of the scored positions alone (`logits_to_keep` as a boolean mask, which
transformers 5.x causal LMs take), then computes the same cross-entropy the model would have. The model's
own `forward` runs, so DDP, FSDP, DeepSpeed and PEFT wrappers see an ordinary call.
"""

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from data.labels import IGNORE_INDEX
from recipes.closed_book_qa.generation_eval import GenerationEvalTrainer


def answer_only_loss(
    model: nn.Module, inputs: dict[str, torch.Tensor], *, num_items_in_batch: torch.Tensor | int | None = None
) -> torch.Tensor:
    """transformers' causal-LM loss (labels shifted inside, -100 ignored, float32; summed and divided by
    `num_items_in_batch` when given, else the mean) with logits computed only where a label counts.

    Raises:
        RuntimeError: the model ignored `logits_to_keep` as a mask (logits not one per scored position).
    """
    labels = inputs["labels"]
    scored = labels[:, 1:] != IGNORE_INDEX  # [b, t-1]: position i predicts token i+1
    keep = F.pad(scored, (0, 1), value=False)  # [b, t]: the positions whose next token is scored
    features = {name: value for name, value in inputs.items() if name != "labels"}
    logits = model(**features, logits_to_keep=keep).logits  # [n, V]
    targets = labels[:, 1:][scored]  # [n]
    if logits.shape[:-1] != targets.shape:
        raise RuntimeError(f"{type(model).__name__}: logits_to_keep as a mask gave logits {tuple(logits.shape)}")
    total = F.cross_entropy(logits.float(), targets, reduction="sum")
    if num_items_in_batch is None:
        return total / targets.numel()
    return total / torch.as_tensor(num_items_in_batch).to(total.device)


def takes_logits_mask(model: nn.Module) -> bool:
    """Whether `model` (unwrapped, PEFT included) has a `logits_to_keep` argument."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(model.forward).parameters


class QATrainer(GenerationEvalTrainer):
    """`GenerationEvalTrainer` whose training loss applies the output layer to the answer positions only
    (`answer_only_loss`). It falls back to `Trainer.compute_loss` where that would compute something else:
    outputs requested, label smoothing or a custom `compute_loss_func`, or a model without `logits_to_keep`."""

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        plain = self.label_smoother is not None or self.compute_loss_func is not None
        if return_outputs or plain or "labels" not in inputs or not takes_logits_mask(self.model):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if not self.model_accepts_loss_kwargs:
            num_items_in_batch = None  # what Trainer would pass the model
        loss = answer_only_loss(model, inputs, num_items_in_batch=num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # As Trainer.compute_loss: the gradients are averaged over the processes, the token count summed.
            loss = loss * (
                self.accelerator.num_processes // self.get_tp_size() if self.args.n_gpu <= 1 else self.args.n_gpu
            )
        return loss
