"""Configuration of any transformers encoder with a multi-layer perceptron (MLP) classification head.

`EncoderMLPConfig` holds the encoder's own config, unchanged, as the sub-config `encoder` (a `BertConfig`,
`RobertaConfig`, `ModernBertConfig`, ...: whatever `AutoConfig` reads from the checkpoint), and the head's
fields beside it, the way `EncoderDecoderConfig` holds its two halves.
"""

import dataclasses
import inspect

from transformers import MODEL_MAPPING, AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .mlp_head import check_head_fields


def encoder_has_pooler(encoder_config: PreTrainedConfig) -> bool:
    """Whether the `AutoModel` of `encoder_config` can carry a pooler: transformers' encoders that have one
    (BERT, RoBERTa, XLM-R, ...) take `add_pooling_layer` in `__init__`; the others (DistilBERT, ELECTRA,
    DeBERTa-v2, ModernBERT) have none."""
    if type(encoder_config) not in MODEL_MAPPING:  # no `AutoModel` registered: no pooler that we can ask for
        return False
    return "add_pooling_layer" in inspect.signature(MODEL_MAPPING[type(encoder_config)].__init__).parameters


class EncoderMLPConfig(PreTrainedConfig):
    r"""An encoder's config plus an MLP classification head's fields.

    Args:
        encoder: the encoder's config, or its dict (with `model_type`; default a BERT-base config).
        mlp_hidden_sizes: widths of the head's hidden layers, in order; `[]` is a single linear layer.
        mlp_activation: activation between the head's layers, a name from `transformers.activations.ACT2FN`.
        mlp_dropout: dropout probability before every linear layer of the head, in [0, 1).
        pooling: how one vector per sequence is taken from the encoder. `"cls"`: the first token's last
            hidden state. `"mean"`: the mean of the last hidden states over non-padding tokens. `"pooler"`:
            the encoder's pooler (BERT's dense + tanh on the first token), for encoders that have one.
    """

    model_type = "encoder-mlp"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: PreTrainedConfig | dict | None = None
    mlp_hidden_sizes: list[int] | tuple[int, ...] = (256,)
    mlp_activation: str = "gelu"
    mlp_dropout: float | int = 0.1
    pooling: str = "cls"

    def __post_init__(self, **kwargs):
        check_head_fields(self)
        super().__post_init__(**kwargs)  # builds `encoder` from its dict
        if self.pooling == "pooler" and not encoder_has_pooler(self.encoder):
            raise ValueError(f"pooling 'pooler': a {self.encoder.model_type!r} encoder has none; use 'cls' or 'mean'")

    def with_fields(self, **fields) -> "EncoderMLPConfig":
        """A copy with `fields` set, each where it belongs: this config's own (`pooling`, `num_labels`, ...) here,
        any other (`hidden_size`, `vocab_size`, `hidden_dropout_prob`, ...) in the encoder's config. A field that
        neither has raises `ValueError` naming it."""
        own = {field.name for field in dataclasses.fields(self)} | {"num_labels"}
        encoder_fields = {name: value for name, value in fields.items() if name not in own}
        unknown = sorted(name for name in encoder_fields if not hasattr(self.encoder, name))
        if unknown:
            raise ValueError(f"{type(self).__name__} and its {type(self.encoder).__name__} have no field(s) {unknown}")
        encoder = type(self.encoder)(**{**self.encoder.to_dict(), **encoder_fields})
        head_fields = {name: value for name, value in fields.items() if name in own}
        base = self.to_dict()
        if "num_labels" in head_fields and "id2label" not in head_fields:  # new labels replace the old names
            base = {name: value for name, value in base.items() if name not in ("id2label", "label2id")}
        return type(self)(**{**base, **head_fields, "encoder": encoder})


__all__ = ["EncoderMLPConfig", "encoder_has_pooler"]
