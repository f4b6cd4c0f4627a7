"""BERT encoder + MLP classification head, as a transformers AutoModelForSequenceClassification."""

from .configuration_bert_mlp import BertMLPConfig
from .mlp_head import POOLINGS, MLPHead, masked_mean
from .modeling_bert_mlp import BertMLPForSequenceClassification, BertMLPPreTrainedModel

__all__ = [
    "POOLINGS",
    "BertMLPConfig",
    "BertMLPForSequenceClassification",
    "BertMLPPreTrainedModel",
    "MLPHead",
    "masked_mean",
]
