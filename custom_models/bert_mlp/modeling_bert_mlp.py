"""A BERT encoder with a multi-layer perceptron (MLP) head for sequence classification or regression.

Axis names: b = batch, t = tokens, d = hidden_size, c = num_labels.

The encoder lives under `bert.` exactly as in `BertForSequenceClassification`, so
`BertMLPForSequenceClassification.from_pretrained(<any BERT-architecture checkpoint>)` loads it from a
`BertModel` (keys `embeddings.*`, `encoder.*`), `BertForMaskedLM` or `BertForSequenceClassification` save
and only the head (`classifier.*`) is newly initialised.
"""

import torch
from torch import nn
from transformers import BertModel, BertPreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_bert_mlp import BertMLPConfig


def masked_mean(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the non-padding tokens: [b, t, d], [b, t] -> [b, d]. No mask means every token counts."""
    if attention_mask is None:
        return hidden_states.mean(dim=1)
    weights = attention_mask.to(hidden_states.dtype).unsqueeze(-1)  # [b, t, 1]
    return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class BertMLPHead(nn.Module):
    """dropout -> linear -> activation for each of `mlp_hidden_sizes`, then dropout -> linear to `num_labels`."""

    def __init__(self, config: BertMLPConfig):
        super().__init__()
        sizes = [config.hidden_size, *config.mlp_hidden_sizes]
        self.hidden = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        self.activation = ACT2FN[config.mlp_activation]
        self.dropout = nn.Dropout(config.mlp_dropout)
        self.out_proj = nn.Linear(sizes[-1], config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:  # [b, d] -> [b, c]
        for layer in self.hidden:
            pooled = self.activation(layer(self.dropout(pooled)))
        return self.out_proj(self.dropout(pooled))


class BertMLPPreTrainedModel(BertPreTrainedModel):
    """BERT's weight initialisation and loading rules (`base_model_prefix = "bert"`) under `BertMLPConfig`."""

    config_class = BertMLPConfig
    # A pre-training checkpoint carries an MLM / NSP head (`cls.*`) and, unless `pooling="pooler"`, a pooler
    # that this model does not use: dropping them is expected, not worth a warning.
    _keys_to_ignore_on_load_unexpected = [r"(^|\.)cls\.", r"(^|\.)pooler\."]


class BertMLPForSequenceClassification(BertMLPPreTrainedModel):
    # `forward` computes a plain mean loss and ignores `num_items_in_batch`: without this, Trainer would
    # multiply the loss by the number of processes under DDP.
    accepts_loss_kwargs = False

    def __init__(self, config: BertMLPConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=config.pooling == "pooler")
        self.classifier = BertMLPHead(config)
        self.post_init()
        # The layers FSDP shards one by one (and `device_map` keeps whole). BERT also lists `BertEmbeddings`, but
        # accelerate (1.15) then shards the word embeddings inside it a second time and fails; it gives them a
        # shard group of their own anyway.
        self._no_split_modules = {"BertLayer"}

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
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        if self.config.pooling == "pooler":
            pooled = outputs.pooler_output  # [b, d]
        elif self.config.pooling == "mean":
            pooled = masked_mean(outputs.last_hidden_state, attention_mask)  # [b, t, d] -> [b, d]
        else:
            pooled = outputs.last_hidden_state[:, 0]  # [CLS]: [b, t, d] -> [b, d]
        logits = self.classifier(pooled)  # [b, c]
        loss = self.loss(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss of `config.problem_type`, inferred as BERT does when unset: one label -> regression (MSE),
        integer labels -> single-label cross-entropy, float labels [b, c] -> multi-label BCE with logits."""
        problem_type = self.config.problem_type
        if problem_type is None:
            if self.num_labels == 1:
                problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem_type = "single_label_classification"
            else:
                problem_type = "multi_label_classification"
        if problem_type == "regression":
            predictions = logits.squeeze(-1) if self.num_labels == 1 else logits
            return nn.functional.mse_loss(predictions, labels.to(logits.dtype))
        if problem_type == "single_label_classification":
            return nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


__all__ = ["BertMLPForSequenceClassification", "BertMLPHead", "BertMLPPreTrainedModel", "masked_mean"]
