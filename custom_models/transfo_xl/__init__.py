"""Transformer-XL (Dai et al. 2019) as a transformers 5.x AutoModel; see modeling_transfo_xl.py."""

from .configuration_transfo_xl import TransformerXLConfig
from .modeling_transfo_xl import (
    TransformerXLForCausalLM,
    TransformerXLLMOutput,
    TransformerXLModel,
    TransformerXLModelOutput,
    TransformerXLPreTrainedModel,
)

__all__ = [
    "TransformerXLConfig",
    "TransformerXLPreTrainedModel",
    "TransformerXLModel",
    "TransformerXLForCausalLM",
    "TransformerXLModelOutput",
    "TransformerXLLMOutput",
]
