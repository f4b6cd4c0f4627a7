"""The run's model config (`recipes.kit.model_config`): checked against a checkpoint's config before any data
loads, read once per purpose, and the longest input a model takes, which `check_sequence_length` holds the
recipes to."""

import importlib
import traceback
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig

from recipes.kit.command_line import parse_config
from recipes.kit.errors import ConfigError
from recipes.kit.model_config import check_sequence_length, max_positions
from tests.tiny_models import transfo_xl_config

REPO = Path(__file__).resolve().parents[3]

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


def test_a_bad_config_overrides_key_fails_before_the_data_is_read(tmp_path):
    """Against a checkpoint the keys are checked on its config, read by `check_checkpoint_config`, first in `main`."""
    transfo_xl_config(vocab_size=50, mem_len=8).save_pretrained(tmp_path / "checkpoint")
    recipe = importlib.import_module("recipes.transformer_xl.train")
    argv = [str(REPO / "recipes/transformer_xl/configs/tiny.yaml"), "--output_dir", str(tmp_path / "out")]
    argv += ["--model_name_or_path", str(tmp_path / "checkpoint"), "--config_overrides", "n_layr=1"]
    argv += ["--validation_file", str(tmp_path / "missing.txt")]
    parsed = parse_config(*recipe.CONFIG_CLASSES, argv=argv)
    with pytest.raises(ConfigError, match=r"config_overrides: TransformerXLConfig has no field\(s\) \['n_layr'\]"):
        recipe.main(*parsed)  # not the DataError of the missing file


@pytest.mark.slow
def test_evaluate_only_sentiment_reads_the_folders_config_once_per_purpose(tiny_run, tmp_path, monkeypatch):
    """An evaluate-only run reads `config.json` once to check the configuration before any data loads, and once
    for the trained model (its label names, its weights' config); the tokenizer's loader reads it on its own.
    (Before the reads moved out of the argument classes: four times besides the tokenizer's.)"""
    folder = tiny_run("sentiment")
    reads = []
    original = PretrainedConfig._dict_from_json_file.__func__

    def counting(cls, json_file):
        if Path(json_file) == folder / "config.json":
            stack = traceback.extract_stack()
            reads.append("tokenizer" if any("tokenization_auto" in frame.filename for frame in stack) else "model")
        return original(cls, json_file)

    monkeypatch.setattr(PretrainedConfig, "_dict_from_json_file", classmethod(counting))
    recipe = importlib.import_module("recipes.sentiment.train")
    argv = [str(REPO / "recipes/sentiment/configs/tiny.yaml"), "--output_dir", str(tmp_path / "eval")]
    argv += ["--do_train", "false", "--model_name_or_path", str(folder), "--disable_tqdm", "true"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = recipe.main(*parse_config(*recipe.CONFIG_CLASSES, argv=argv))
    finally:
        torch.set_num_threads(threads)
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    assert reads.count("model") == 2, reads
