"""LoRA that fits the model: the adapter fields (`use_dora`, `use_rslora`, `lora_modules_to_save`) reach PEFT's
config of the wrapped model, QA's default targets follow the model type, and a k-bit model is loaded onto each
process's own device (bitsandbytes itself is not needed to check the loading arguments)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, TrainingArguments

from recipes.closed_book_qa.train import LORA_TARGETS, QAModelArguments
from recipes.kit import loading_options
from recipes.kit.adapters import add_lora_adapters
from recipes.kit.arguments import LoraArguments
from recipes.kit.loading_options import kbit_device_map, pretrained_kwargs
from tests import tiny_models


def with_adapters(model: torch.nn.Module, tmp_path, **fields) -> torch.nn.Module:
    """`model` through `add_lora_adapters` as the QA recipe calls it, with `LoraArguments(use_lora=True, **fields)`."""
    training_args = TrainingArguments(output_dir=str(tmp_path), do_train=True, use_cpu=True, report_to=[])
    targets = LORA_TARGETS.get(model.config.model_type, "all-linear")
    lora_args = LoraArguments(use_lora=True, **fields)
    return add_lora_adapters(model, lora_args, training_args, task_type="CAUSAL_LM", default_targets=targets)


def tiny_llama() -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_models.decoder_config(LlamaConfig, vocab_size=64))


def test_dora_rslora_and_modules_to_save_reach_the_peft_config(tmp_path):
    plain = with_adapters(tiny_llama(), tmp_path).peft_config["default"]
    assert not plain.use_dora and not plain.use_rslora and not plain.modules_to_save  # the defaults: off
    model = with_adapters(
        tiny_llama(), tmp_path, use_dora=True, use_rslora=True, lora_modules_to_save=["lm_head"], lora_r=4
    )
    config = model.peft_config["default"]
    assert config.use_dora and config.use_rslora and config.modules_to_save == ["lm_head"]
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert "default" in q_proj.lora_magnitude_vector  # DoRA's trained magnitude, per output
    assert q_proj.scaling["default"] == pytest.approx(16 / 4**0.5)  # rsLoRA: alpha / sqrt(r), not alpha / r


def test_qa_adapters_go_on_every_linear_layer_but_gpt2s_fused_attention(tmp_path):
    llama = with_adapters(tiny_llama(), tmp_path).peft_config["default"]
    linear = [f"self_attn.{p}_proj" for p in "qkvo"] + [f"mlp.{p}_proj" for p in ("gate", "up", "down")]
    assert llama.target_modules == {f"model.layers.0.{module}" for module in linear}  # not lm_head
    gpt2 = AutoModelForCausalLM.from_config(tiny_models.gpt2_config(vocab_size=64))
    assert with_adapters(gpt2, tmp_path).peft_config["default"].target_modules == {"c_attn"}


def test_a_kbit_model_loads_on_each_processs_own_device(monkeypatch):
    quantised = QAModelArguments(model_name_or_path="gpt2", load_in_4bit=True)
    assert "device_map" not in pretrained_kwargs(QAModelArguments(model_name_or_path="gpt2"))
    assert pretrained_kwargs(quantised)["device_map"] == {"": "cpu"}  # no accelerator here

    class ThirdProcess:
        local_process_index = 3

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(loading_options, "PartialState", ThirdProcess)
    assert kbit_device_map() == {"": 3}
    assert pretrained_kwargs(quantised)["device_map"] == {"": 3}
    assert pretrained_kwargs(QAModelArguments(model_name_or_path="gpt2", load_in_8bit=True))["device_map"] == {"": 3}
