"""A BERT encoder with a multi-layer perceptron (MLP) head for sequence classification or regression.

Axis names: b = batch, t = tokens, d = hidden_size, c = num_labels.

The encoder lives under `bert.` exactly as in `BertForSequenceClassification`, so
`BertMLPForSequenceClassification.from_pretrained(<any BERT-architecture checkpoint>)` loads it from a
`BertModel` (keys `embeddings.*`, `encoder.*`), `BertForMaskedLM` or `BertForSequenceClassification` save
and only the head (`classifier.*`) is newly initialised.
"""

import torch
from transformers import BertModel, BertPreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .configuration_bert_mlp import BertMLPConfig
from .mlp_head import MLPClassifierForward, MLPHead


class BertMLPPreTrainedModel(BertPreTrainedModel):
    """BERT's weight initialisation and loading rules (`base_model_prefix = "bert"`) under `BertMLPConfig`."""

    config_class = BertMLPConfig
    # A pre-training checkpoint carries an MLM / NSP head (`cls.*`) and, unless `pooling="pooler"`, a pooler
    # that this model does not use: dropping them is expected, not worth a warning.
    _keys_to_ignore_on_load_unexpected = [r"(^|\.)cls\.", r"(^|\.)pooler\."]


class BertMLPForSequenceClassification(MLPClassifierForward, BertMLPPreTrainedModel):
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

    def encode(self, inputs: dict[str, torch.Tensor | None], **output_flags: bool | None) -> BaseModelOutputWithPooling:
        """BERT's outputs for `forward` (`MLPClassifierForward`): BERT takes every input `forward` does."""
        return self.bert(**inputs, **output_flags, return_dict=True)


__all__ = ["BertMLPForSequenceClassification", "BertMLPPreTrainedModel"]
