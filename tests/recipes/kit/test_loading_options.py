"""The loading fields of `ModelArguments` (`recipes.kit.loading_options`): bad values and impossible combinations fail
when the arguments are parsed, naming the field; set values become the keyword arguments of transformers' loaders
(that they reach the model built: tests/recipes/kit/test_model_loading.py)."""

import importlib.util
import re
from pathlib import Path

import pytest
import torch
from transformers import BitsAndBytesConfig
from transformers.utils import is_flash_attn_2_available

from recipes.closed_book_qa import train as qa_recipe
from recipes.kit.command_line import parse_config
from recipes.kit.errors import ConfigError
from recipes.kit.loading_options import new_model_kwargs, pretrained_kwargs
from recipes.transformer_xl import train as txl_recipe

REPO = Path(__file__).resolve().parents[3]
QA_TINY = str(REPO / "recipes" / "closed_book_qa" / "configs" / "tiny.yaml")
TXL_TINY = str(REPO / "recipes" / "transformer_xl" / "configs" / "tiny.yaml")


def parse_qa(tmp_path: Path, *flags: str) -> tuple:
    """The QA recipe's tiny.yaml with `flags`; no `config_overrides`, so that a Hub id is not read here."""
    argv = [QA_TINY, "--output_dir", str(tmp_path / "out"), "--config_overrides", "", *flags]
    return parse_config(*qa_recipe.CONFIG_CLASSES, argv=argv)


def parse_txl(tmp_path: Path, *flags: str) -> tuple:
    """As `parse_qa`, for the Transformer-XL recipe (which has no LoRA adapters)."""
    argv = [TXL_TINY, "--output_dir", str(tmp_path / "out"), "--config_overrides", "", *flags]
    return parse_config(*txl_recipe.CONFIG_CLASSES, argv=argv)


@pytest.fixture
def bitsandbytes_found(monkeypatch):
    """For the k-bit checks that come after the one for bitsandbytes itself: it is found, installed or not."""
    installed = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes" else installed(name, *a)
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dtype", "float64"),
        ("attn_implementation", "flash"),
        ("bnb_4bit_quant_type", "int4"),
        ("bnb_4bit_compute_dtype", "int8"),
    ],
)
def test_invalid_loading_value_fails_at_parse_time_naming_the_field(tmp_path, field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be one of .*got '{value}'"):
        parse_qa(tmp_path, f"--{field}", value)


@pytest.mark.skipif(is_flash_attn_2_available(), reason="flash-attn is installed here")
def test_flash_attention_2_without_flash_attn_fails_at_parse_time(tmp_path):
    with pytest.raises(ValueError, match="^attn_implementation flash_attention_2: the flash-attn package"):
        parse_qa(tmp_path, "--attn_implementation", "flash_attention_2")


def test_both_4_and_8_bit_fail_at_parse_time(tmp_path):
    with pytest.raises(ValueError, match="load_in_4bit and load_in_8bit are both true"):
        parse_qa(tmp_path, "--model_name_or_path", "gpt2", "--load_in_4bit", "true", "--load_in_8bit", "true")


def test_kbit_without_bitsandbytes_fails_at_parse_time(tmp_path, monkeypatch):
    installed = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else installed(name, *a)
    )
    with pytest.raises(ValueError, match=r"^load_in_8bit needs bitsandbytes: pip install '\.\[quantization\]'"):
        parse_qa(tmp_path, "--model_name_or_path", "gpt2", "--load_in_8bit", "true")


def test_kbit_without_a_checkpoint_fails_at_parse_time(tmp_path, bitsandbytes_found):
    with pytest.raises(ValueError, match="^load_in_4bit quantises a pretrained checkpoint: give model_name_or_path"):
        parse_qa(tmp_path, "--load_in_4bit", "true")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "load_in_4bit trains adapters on frozen quantised weights (QLoRA): set use_lora true"),
        (["--use_lora", "true"], "load_in_4bit with merge_lora_on_save true would merge"),
    ],
)
def test_kbit_training_without_unmerged_adapters_fails_at_parse_time(tmp_path, bitsandbytes_found, flags, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        parse_qa(tmp_path, "--model_name_or_path", "gpt2", "--load_in_4bit", "true", *flags)


def test_kbit_training_with_unmerged_adapters_parses(tmp_path, bitsandbytes_found):
    flags = ["--model_name_or_path", "gpt2", "--load_in_4bit", "true", "--use_lora", "true"]
    model_args = parse_qa(tmp_path, *flags, "--merge_lora_on_save", "false")[0]
    assert model_args.load_in_4bit


def test_kbit_in_a_recipe_without_adapters_fails_at_parse_time(tmp_path, bitsandbytes_found):
    with pytest.raises(ConfigError, match="^load_in_8bit trains adapters .*: this recipe has no LoRA adapters"):
        parse_txl(tmp_path, "--model_name_or_path", "someone/txl", "--load_in_8bit", "true")


def test_transformer_xl_refuses_sdpa_at_parse_time(tmp_path):
    with pytest.raises(ValueError, match="^attn_implementation sdpa: Transformer-XL"):
        parse_txl(tmp_path, "--attn_implementation", "sdpa")


def test_defaults_load_as_transformers_does(tmp_path):
    model_args = parse_qa(tmp_path)[0]
    assert pretrained_kwargs(model_args) == {"revision": "main", "trust_remote_code": False}
    assert new_model_kwargs(model_args) == {}


def test_loading_fields_become_from_pretrained_arguments(tmp_path):
    flags = ["--dtype", "bfloat16", "--attn_implementation", "eager", "--model_revision", "v1"]
    model_args = parse_qa(tmp_path, *flags, "--trust_remote_code", "true")[0]
    expected = {"revision": "v1", "trust_remote_code": True, "dtype": torch.bfloat16, "attn_implementation": "eager"}
    assert pretrained_kwargs(model_args) == expected
    assert new_model_kwargs(model_args) == {"dtype": torch.bfloat16, "attn_implementation": "eager"}


def test_dtype_auto_follows_the_checkpoint_and_builds_float32_from_config(tmp_path):
    model_args = parse_qa(tmp_path, "--dtype", "auto")[0]
    assert pretrained_kwargs(model_args)["dtype"] == "auto"
    assert "dtype" not in new_model_kwargs(model_args)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes is not installed")
def test_4bit_fields_become_a_bitsandbytes_config(tmp_path):
    flags = ["--model_name_or_path", "gpt2", "--use_lora", "true", "--merge_lora_on_save", "false"]
    quantised = ["--load_in_4bit", "true", "--dtype", "bfloat16", "--bnb_4bit_use_double_quant", "true"]
    model_args = parse_qa(tmp_path, *flags, *quantised, "--bnb_4bit_quant_type", "fp4")[0]
    config = pretrained_kwargs(model_args)["quantization_config"]
    assert isinstance(config, BitsAndBytesConfig) and config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "fp4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16  # the model's dtype, as no compute dtype was given
    model_args = parse_qa(tmp_path, *flags, *quantised, "--bnb_4bit_compute_dtype", "float32")[0]
    assert pretrained_kwargs(model_args)["quantization_config"].bnb_4bit_compute_dtype == torch.float32


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes is not installed")
def test_8bit_field_becomes_a_bitsandbytes_config(tmp_path):
    flags = ["--model_name_or_path", "gpt2", "--use_lora", "true", "--merge_lora_on_save", "false"]
    config = pretrained_kwargs(parse_qa(tmp_path, *flags, "--load_in_8bit", "true")[0])["quantization_config"]
    assert isinstance(config, BitsAndBytesConfig) and config.load_in_8bit and not config.load_in_4bit
