"""Registers every model package with the Auto classes; nothing else.

Importing `custom_models` makes `AutoConfig` / `AutoModel*` resolve our `model_type`s, and marks
each class with `register_for_auto_class` so `save_pretrained` / `push_to_hub` copy the package's
code next to the weights and `from_pretrained(..., trust_remote_code=True)` works in a process
that never imported this repository.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PreTrainedConfig,
    PreTrainedModel,
)

from .bert_mlp import BertMLPConfig, BertMLPForSequenceClassification
from .encoder_mlp import EncoderMLPConfig, EncoderMLPForSequenceClassification
from .nce_lm import NCELMConfig, NCELMForCausalLM, NCELMModel
from .transfo_xl import TransformerXLConfig, TransformerXLForCausalLM, TransformerXLModel


def _register(config_class: type[PreTrainedConfig], models: dict[type, type[PreTrainedModel]]) -> None:
    AutoConfig.register(config_class.model_type, config_class)
    config_class.register_for_auto_class()
    for auto_class, model_class in models.items():
        auto_class.register(config_class, model_class)
        model_class.register_for_auto_class(auto_class.__name__)


_register(BertMLPConfig, {AutoModelForSequenceClassification: BertMLPForSequenceClassification})
_register(EncoderMLPConfig, {AutoModelForSequenceClassification: EncoderMLPForSequenceClassification})
_register(NCELMConfig, {AutoModel: NCELMModel, AutoModelForCausalLM: NCELMForCausalLM})
_register(TransformerXLConfig, {AutoModel: TransformerXLModel, AutoModelForCausalLM: TransformerXLForCausalLM})
