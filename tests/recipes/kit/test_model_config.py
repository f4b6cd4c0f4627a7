"""The run's model config: the longest input a model takes, which `check_sequence_length` holds the recipes to."""

import pytest
import torch
from transformers import AutoConfig, AutoModel

from recipes.kit.errors import ConfigError
from recipes.kit.model_config import check_sequence_length, max_positions

SIZES = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
# family -> its fields, with 16 position embeddings (RoBERTa: two of them before the first token's position)
MODELS = {
    "bert": {**SIZES, "max_position_embeddings": 16},
    "roberta": {**SIZES, "max_position_embeddings": 16, "pad_token_id": 1},
    "gpt2": {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 16},
}


def _forward(config, length: int) -> None:
    model = AutoModel.from_config(config).eval()
    with torch.no_grad():
        model(input_ids=torch.full((1, length), 5))  # 5: no model's padding id


@pytest.mark.parametrize("family", sorted(MODELS))
def test_max_positions_is_the_longest_input_the_model_takes(family):
    config = AutoConfig.for_model(family, vocab_size=50, **MODELS[family])
    limit = max_positions(config)
    assert limit == (14 if family == "roberta" else 16)
    _forward(config, limit)
    with pytest.raises((RuntimeError, IndexError)):  # the lookup past the last position embedding
        _forward(config, limit + 1)


def test_relative_positions_only_have_no_limit():
    config = AutoConfig.for_model("deberta-v2", vocab_size=50, position_biased_input=False, relative_attention=True)
    config.update({**SIZES, "max_position_embeddings": 16})
    assert max_positions(config) is None
    _forward(config, 40)
    check_sequence_length(config, max_seq_length=40)


def test_a_length_past_the_positions_is_refused_naming_both_numbers():
    config = AutoConfig.for_model("gpt2", n_positions=16)
    with pytest.raises(ConfigError, match=r"^block_size 17 > 16 tokens, the model's n_positions .*: lower block_size$"):
        check_sequence_length(config, block_size=17)
    check_sequence_length(config, block_size=16)
