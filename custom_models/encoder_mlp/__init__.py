"""Any transformers encoder + MLP head, as a transformers AutoModelForSequenceClassification."""

from .configuration_encoder_mlp import EncoderMLPConfig, encoder_has_pooler
from .mlp_head import POOLINGS, MLPHead, masked_mean
from .modeling_encoder_mlp import EncoderMLPForSequenceClassification, EncoderMLPPreTrainedModel

__all__ = [
    "POOLINGS",
    "EncoderMLPConfig",
    "EncoderMLPForSequenceClassification",
    "EncoderMLPPreTrainedModel",
    "MLPHead",
    "encoder_has_pooler",
    "masked_mean",
]
