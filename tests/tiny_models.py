"""The tiny model of each architecture the tests build, kept once (as transformers' `GPT2ModelTester` keeps one
per model): hidden size 32, two layers, two heads. A test overrides only the fields its claim depends on (a
vocabulary, a memory length, a loss); conftest.py's `TINY_OVERRIDES` turns the same shapes (one layer for the
language models) into the recipes' `--config_overrides` values with `as_config_overrides`."""

from transformers import BertConfig, Gemma2Config, GPT2Config, LlamaConfig, Phi3Config, PretrainedConfig, Qwen2Config

from custom_models.bert_mlp import BertMLPConfig
from custom_models.nce_lm import NCELMConfig
from custom_models.transfo_xl import TransformerXLConfig

TRANSFO_XL = dict(d_model=32, d_embed=32, n_head=2, d_head=16, d_inner=64, n_layer=2)
GPT2 = dict(n_embd=32, n_layer=2, n_head=2, n_positions=64)  # also the NCE LM's, a GPT-2 with another loss
BERT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64
)
#: The chat-tuned decoder families, one layer, grouped-query attention (2 heads sharing 1 key/value head); Gemma 2
#: with heads of 16 (its default: 256) scaled by 1/sqrt(16) and a window shorter than the positions.
DECODER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
DECODERS = {
    LlamaConfig: DECODER,
    Qwen2Config: DECODER,
    Phi3Config: DECODER,  # its defaults name ids of a 32k vocabulary (pad 32000): give the tokenizer's
    Gemma2Config: {**DECODER, "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 64},
}

# Every dropout off: train and eval mode compute the same function, and runs compared with each other agree.
TRANSFO_XL_NO_DROPOUT = dict(dropout=0.0, dropatt=0.0)
GPT2_NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
BERT_NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def transfo_xl_config(**overrides) -> TransformerXLConfig:
    """`TRANSFO_XL` with every position attending to its whole memory (`clamp_len` 0, `same_length` False: a
    segmented pass then equals a full one) and no end-of-text token among the tests' random ids; a short memory
    (16) instead of the paper's 1600."""
    fields = dict(TRANSFO_XL, mem_len=16, clamp_len=0, same_length=False, eos_token_id=None)
    return TransformerXLConfig(**{**fields, **overrides})


def nce_lm_config(**overrides) -> NCELMConfig:
    return NCELMConfig(**{**GPT2, **overrides})


def gpt2_config(**overrides) -> GPT2Config:
    return GPT2Config(**{**GPT2, **overrides})


def decoder_config(config_class: type[PretrainedConfig], **overrides) -> PretrainedConfig:
    """A tiny config of a chat-tuned decoder family (`DECODERS`: Llama, Qwen2, Phi-3, Gemma 2), 128 positions."""
    return config_class(**{**DECODERS[config_class], "max_position_embeddings": 128, **overrides})


def bert_config(**overrides) -> BertConfig:
    return BertConfig(**{**BERT, **overrides})


def bert_mlp_config(**overrides) -> BertMLPConfig:
    return BertMLPConfig(**{**BERT, **overrides})


def as_config_overrides(fields: dict) -> str:
    """`{"n_layer": 1, "dropout": 0.0}` -> `"n_layer=1,dropout=0.0"`, as a recipe's `--config_overrides` reads it."""
    return ",".join(f"{key}={value}" for key, value in fields.items())
