"""A BERT encoder with a multi-layer perceptron (MLP) head for sequence classification or regression.

Axis names: b = batch, t = tokens, d = hidden_size, c = num_labels.

The encoder lives under `bert.` exactly as in `BertForSequenceClassification`, so
`BertMLPForSequenceClassification.from_pretrained(<any BERT-architecture checkpoint>)` loads it from a
`BertModel` (keys `embeddings.*`, `encoder.*`), `BertForMaskedLM` or `BertForSequenceClassification` save
and only the head (`classifier.*`) is newly initialised.
"""

import torch
from transformers import BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_bert_mlp import BertMLPConfig
from .mlp_head import MLPHead, pool, sequence_classification_loss


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
        self.classifier = MLPHead(config, config.hidden_size)
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
        logits = self.classifier(pool(outputs, attention_mask, self.config.pooling))  # [b, d] -> [b, c]
        loss = sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = ["BertMLPForSequenceClassification", "BertMLPPreTrainedModel"]
