"""Configuration of a BERT encoder with a multi-layer perceptron (MLP) classification head.

`BertMLPConfig` is a `BertConfig` (every BERT field keeps its meaning, so the config of any BERT-architecture
checkpoint, e.g. `bert-base-uncased` or a MiniLM sentence encoder, loads into it) plus the fields of the head.
"""

from transformers import BertConfig

from .mlp_head import check_head_fields


class BertMLPConfig(BertConfig):
    r"""BERT configuration with an MLP classification head.

    Args (in addition to `BertConfig`'s):
        mlp_hidden_sizes: widths of the head's hidden layers, in order; `[]` is a single linear layer
            (the classic BERT classifier without its pooler).
        mlp_activation: activation between the head's layers, a name from `transformers.activations.ACT2FN`
            (`"gelu"`, `"relu"`, `"tanh"`, ...).
        mlp_dropout: dropout probability before every linear layer of the head, in [0, 1).
        pooling: how one vector per sequence is taken from the encoder. `"cls"`: the first token's last
            hidden state. `"mean"`: the mean of the last hidden states over non-padding tokens. `"pooler"`:
            BERT's pooler (dense + tanh on the first token), loaded from the checkpoint when it has one.
    """

    model_type = "bert-mlp"

    mlp_hidden_sizes: list[int] | tuple[int, ...] = (256,)
    mlp_activation: str = "gelu"
    mlp_dropout: float | int = 0.1
    pooling: str = "cls"

    def __post_init__(self, **kwargs):
        check_head_fields(self)
        # A BERT checkpoint's config.json says `model_type: bert`; this config is always `bert-mlp`.
        kwargs.pop("model_type", None)
        super().__post_init__(**kwargs)

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        """Reads a plain BERT checkpoint's config (`model_type: bert`) as a `bert-mlp` one: it is the intended
        starting point, so transformers' "model of type bert" warning would be noise. Other types still warn."""
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        if config_dict.get("model_type") == BertConfig.model_type:
            config_dict = {**config_dict, "model_type": cls.model_type}
        return config_dict, kwargs


__all__ = ["BertMLPConfig"]
