"""GPT-2 language model trained with noise-contrastive estimation (NCE), as a transformers AutoModel."""

from .configuration_nce_lm import NCELMConfig
from .modeling_nce_lm import (
    NCELMForCausalLM,
    NCELMModel,
    NCELMOutput,
    NCELMPreTrainedModel,
    count_tokens,
    nce_loss,
    noise_log_probs_from_counts,
    ranking_loss,
)

__all__ = [
    "NCELMConfig",
    "NCELMForCausalLM",
    "NCELMModel",
    "NCELMOutput",
    "NCELMPreTrainedModel",
    "count_tokens",
    "nce_loss",
    "noise_log_probs_from_counts",
    "ranking_loss",
]
