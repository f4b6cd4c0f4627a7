"""Any transformers encoder (`AutoModel`) with a multi-layer perceptron (MLP) head for sequence classification.

Axis names: b = batch, t = tokens, d = the encoder's hidden size, c = num_labels.

The encoder is `AutoModel.from_config(config.encoder)` under `encoder.`, the head `classifier.`. A new model
starts from a pretrained encoder with `EncoderMLPForSequenceClassification.from_encoder_pretrained(name, ...)`
(like `EncoderDecoderModel.from_encoder_decoder_pretrained`): `AutoModel.from_pretrained` reads the encoder
from any save of it (`BertModel`, `BertForMaskedLM`, ...), and only the head is newly initialised.
"""

import inspect

import torch
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from .configuration_encoder_mlp import EncoderMLPConfig, encoder_has_pooler
from .mlp_head import MLPClassifierForward, MLPHead

#: What `forward` hands the encoder when given; an encoder that does not take one (DistilBERT and ModernBERT
#: have no `token_type_ids`) never receives it, so any tokenizer's output can be passed as is.
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds")


def pooler_argument(config: EncoderMLPConfig) -> dict[str, bool]:
    """`add_pooling_layer` for encoders that take it: a pooler only when used, since an unused one would get no
    gradient (an error under DDP) and its weights would be saved for nothing."""
    return {"add_pooling_layer": config.pooling == "pooler"} if encoder_has_pooler(config.encoder) else {}


class EncoderMLPPreTrainedModel(PreTrainedModel):
    """The encoder keeps its own weight initialisation (transformers dispatches it to the sub-model); the head
    gets the default one (normal(0, 0.02) weights, zero biases)."""

    config_class = EncoderMLPConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True  # carried out by the encoder's layers
    _supports_sdpa = True  # the encoder decides: it receives the implementation through `config.encoder`
    _supports_flash_attn = True


class EncoderMLPForSequenceClassification(MLPClassifierForward, EncoderMLPPreTrainedModel):
    def __init__(self, config: EncoderMLPConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        if encoder is None:
            encoder = AutoModel.from_config(config.encoder, **pooler_argument(config))
        self.encoder = encoder
        # One config object, so edits to either reach both; the encoder's attention implementation is its own.
        self.config.encoder._attn_implementation = encoder.config._attn_implementation
        self.encoder.config = self.config.encoder
        self._encoder_inputs = set(inspect.signature(self.encoder.forward).parameters) & set(ENCODER_INPUTS)
        self.classifier = MLPHead(config, config.encoder.hidden_size)
        self.post_init()
        # The layers FSDP shards one by one (and `device_map` keeps whole): the encoder's, collected by
        # `post_init`, less its embeddings module (`BertEmbeddings`, `RobertaEmbeddings`, ...): accelerate (1.15)
        # would shard the word embeddings inside it a second time and fail; they get a shard group anyway.
        self._no_split_modules = {name for name in self._no_split_modules if not name.endswith("Embeddings")}

    @classmethod
    def from_encoder_pretrained(
        cls,
        encoder_name_or_path: str,
        config: EncoderMLPConfig | None = None,
        *,
        encoder_kwargs: dict | None = None,
        **config_fields,
    ) -> "EncoderMLPForSequenceClassification":
        """A new classifier on the pretrained encoder `encoder_name_or_path` (a Hub id or folder holding any save
        of an `AutoModel` encoder), e.g. `from_encoder_pretrained("FacebookAI/roberta-base", num_labels=3)`.
        The config is `config`, else the checkpoint's encoder config with `config_fields` (head fields,
        `num_labels`, `id2label`, ...); `encoder_kwargs` go to `from_pretrained` (`revision`, `dtype`, ...)."""
        encoder_kwargs = encoder_kwargs or {}
        if config is None:
            encoder_config = AutoConfig.from_pretrained(encoder_name_or_path, **encoder_kwargs)
            config = EncoderMLPConfig(encoder=encoder_config, **config_fields)
        encoder = AutoModel.from_pretrained(
            encoder_name_or_path, config=config.encoder, **pooler_argument(config), **encoder_kwargs
        )
        model = cls(config, encoder=encoder)
        model.classifier.to(encoder.dtype)  # the head computes in the encoder's dtype (a `dtype` in encoder_kwargs)
        return model

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: torch.nn.Module) -> None:
        self.encoder.set_input_embeddings(value)

    def encode(self, inputs: dict[str, torch.Tensor | None], **output_flags: bool | None) -> BaseModelOutput:
        """The encoder's outputs for `forward` (`MLPClassifierForward`), from the inputs it takes."""
        return self.encoder(
            **{name: value for name, value in inputs.items() if value is not None and name in self._encoder_inputs},
            **output_flags,
            return_dict=True,
        )


__all__ = ["EncoderMLPForSequenceClassification", "EncoderMLPPreTrainedModel"]
