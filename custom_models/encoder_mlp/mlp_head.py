"""The MLP classification head shared by `encoder_mlp` and `bert_mlp`: its config checks, pooling, layers and loss.

One file, two packages: `custom_models/encoder_mlp/mlp_head.py` is the source, `custom_models/bert_mlp/mlp_head.py`
its copy, kept equal by `python -m custom_models.check_copies` (`--fix` rewrites it). `save_pretrained` copies
the file next to each model's weights, so a saved folder imports it as a plain sibling.

Axis names: b = batch, t = tokens, d = the encoder's hidden size, c = num_labels.
"""

import torch
from torch import nn
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput

POOLINGS = ("cls", "mean", "pooler")


def check_head_fields(config: PreTrainedConfig) -> None:
    """Raises `ValueError` naming the field when a head field of `config` is out of range; lists become lists."""
    sizes = config.mlp_hidden_sizes
    if not isinstance(sizes, (list, tuple)) or any(
        isinstance(size, bool) or not isinstance(size, int) or size <= 0 for size in sizes
    ):
        raise ValueError(f"mlp_hidden_sizes must be a list of positive ints, got {sizes!r}")
    config.mlp_hidden_sizes = list(sizes)
    if config.mlp_activation not in ACT2FN:
        raise ValueError(f"mlp_activation must be one of {sorted(ACT2FN)}, got {config.mlp_activation!r}")
    dropout = config.mlp_dropout
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"mlp_dropout must be a float in [0, 1), got {dropout!r}")
    if config.pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {config.pooling!r}")


def masked_mean(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the non-padding tokens: [b, t, d], [b, t] -> [b, d]. No mask means every token counts."""
    if attention_mask is None:
        return hidden_states.mean(dim=1)
    weights = attention_mask.to(hidden_states.dtype).unsqueeze(-1)  # [b, t, 1]
    return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def pool(outputs: BaseModelOutput, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """One vector per sequence from the encoder's outputs, [b, d]. `"cls"`: the first token's last hidden state;
    `"mean"`: the mean over non-padding tokens; `"pooler"`: the encoder's own pooler output."""
    if pooling == "pooler":
        return outputs.pooler_output
    if pooling == "mean":
        return masked_mean(outputs.last_hidden_state, attention_mask)
    return outputs.last_hidden_state[:, 0]


class MLPHead(nn.Module):
    """dropout -> linear -> activation for each of `mlp_hidden_sizes`, then dropout -> linear to `num_labels`."""

    def __init__(self, config: PreTrainedConfig, hidden_size: int):
        super().__init__()
        sizes = [hidden_size, *config.mlp_hidden_sizes]
        self.hidden = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        self.activation = ACT2FN[config.mlp_activation]
        self.dropout = nn.Dropout(config.mlp_dropout)
        self.out_proj = nn.Linear(sizes[-1], config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:  # [b, d] -> [b, c]
        for layer in self.hidden:
            pooled = self.activation(layer(self.dropout(pooled)))
        return self.out_proj(self.dropout(pooled))


def sequence_classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, config: PreTrainedConfig, reduction: str = "mean"
) -> torch.Tensor:
    """Mean loss of `config.problem_type`, inferred as BERT does when unset: one label -> regression (MSE),
    integer labels -> single-label cross-entropy, float labels [b, c] -> multi-label BCE with logits.
    `reduction="none"`: one loss per example, [b] (an example with several outputs: their mean), whose mean is
    the `"mean"` loss; an evaluation averages them over a whole split, each example once, whatever its batches."""
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    num_labels, problem_type = config.num_labels, config.problem_type
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type == "regression":
        predictions = logits.squeeze(-1) if num_labels == 1 else logits
        losses = nn.functional.mse_loss(predictions, labels.to(logits.dtype), reduction=reduction)
    elif problem_type == "single_label_classification":
        losses = nn.functional.cross_entropy(logits.view(-1, num_labels), labels.view(-1), reduction=reduction)
    else:
        losses = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction=reduction)
    return losses if reduction == "mean" else losses.view(logits.shape[0], -1).mean(dim=-1)  # [b, outputs] -> [b]


class MLPClassifierForward:
    """The `forward` of both MLP classifiers, mixed in before their `PreTrainedModel` base: the encoder's outputs
    (from the model's `encode`), pooled, through `classifier`, with the loss of `config.problem_type`. One
    signature for both, so Trainer keeps the same dataset columns for either."""

    # `forward` computes a plain mean loss and ignores `num_items_in_batch`: without this, Trainer would
    # multiply the loss by the number of processes under DDP.
    accepts_loss_kwargs = False

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,  # accepted for callers such as peft; the output is always a dataclass
    ) -> SequenceClassifierOutput:
        inputs = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
        )
        outputs = self.encode(inputs, output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits = self.classifier(pool(outputs, attention_mask, self.config.pooling))  # [b, d] -> [b, c]
        loss = sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = [
    "POOLINGS",
    "MLPClassifierForward",
    "MLPHead",
    "check_head_fields",
    "masked_mean",
    "pool",
    "sequence_classification_loss",
]
