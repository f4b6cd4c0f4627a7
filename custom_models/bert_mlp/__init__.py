"""BERT encoder + MLP classification head, as a transformers AutoModelForSequenceClassification."""

from .configuration_bert_mlp import POOLINGS, BertMLPConfig
from .modeling_bert_mlp import BertMLPForSequenceClassification, BertMLPHead, BertMLPPreTrainedModel, masked_mean

__all__ = [
    "POOLINGS",
    "BertMLPConfig",
    "BertMLPForSequenceClassification",
    "BertMLPHead",
    "BertMLPPreTrainedModel",
    "masked_mean",
]
