"""The configuration files the recipes ship: every YAML under `recipes/` parses with its recipe and starts with the
command that runs it; every accelerate config loads, and `fsdp.yaml` shards each recipe's model layer by layer;
a recipe's own argument checks refuse what cannot run."""

import importlib
import importlib.util
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from transformers import TrainingArguments

from recipes.kit.command_line import parse_config
from recipes.kit.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
RECIPES_DIR = REPO / "recipes"
# Every YAML under recipes/, at any depth: the recipes' own (here, and only here) and accelerate's (below).
RECIPE_CONFIGS = sorted(p for p in RECIPES_DIR.rglob("*.yaml") if "accelerate_configs" not in p.parts)
ACCELERATE_CONFIGS = sorted((RECIPES_DIR / "accelerate_configs").glob("*.yaml"))


def load_recipe(task: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{task}", RECIPES_DIR / task / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", RECIPE_CONFIGS, ids=lambda p: str(p.relative_to(RECIPES_DIR)))
def test_every_recipe_yaml_parses_with_its_recipe_and_names_its_command(path, tmp_path):
    task = path.parent.parent.name
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("# accelerate launch") and f"recipes/{task}/train.py" in first_line
    assert str(path.relative_to(RECIPES_DIR.parent)) in first_line
    parsed = parse_config(*load_recipe(task).CONFIG_CLASSES, argv=[str(path), "--output_dir", str(tmp_path)])
    (training_args,) = [args for args in parsed if isinstance(args, TrainingArguments)]
    if task == "sentiment":  # every sentiment config keeps its best checkpoint, by a named metric
        assert training_args.load_best_model_at_end and training_args.metric_for_best_model


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_every_accelerate_config_loads_and_shows_its_launch_line(path):
    config = load_config_from_file(str(path))
    assert config.num_processes >= 1
    assert f"--config_file recipes/accelerate_configs/{path.name}" in path.read_text(encoding="utf-8")


def tiny_models() -> dict[str, tuple[torch.nn.Module, int]]:
    """One tiny instance of every model a recipe trains, with its number of transformer layers."""
    from transformers import BertConfig, GPT2Config, GPT2LMHeadModel

    from custom_models.bert_mlp import BertMLPConfig, BertMLPForSequenceClassification
    from custom_models.nce_lm import NCELMConfig, NCELMForCausalLM
    from custom_models.transfo_xl import TransformerXLConfig, TransformerXLForCausalLM

    bert = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32)
    return {
        "sentiment": (BertMLPForSequenceClassification(BertMLPConfig(**bert.to_dict())), 3),
        "closed_book_qa": (GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2)), 2),
        "nce_lm": (NCELMForCausalLM(NCELMConfig(vocab_size=50, n_embd=16, n_layer=2, n_head=2)), 2),
        "transformer_xl": (
            TransformerXLForCausalLM(
                TransformerXLConfig(vocab_size=50, d_model=16, d_embed=16, n_head=2, d_head=8, d_inner=32, n_layer=4)
            ),
            4,
        ),
    }


def test_fsdp_config_shards_every_model_layer_by_layer():
    """What accelerate does with `fsdp.yaml` for each recipe's model: every transformer layer becomes its
    own FSDP unit, the model as a whole is not one (a layer class the model lacks would make accelerate
    fail instead)."""
    from accelerate import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    fsdp = load_config_from_file(str(RECIPES_DIR / "accelerate_configs" / "fsdp.yaml")).fsdp_config
    layer_classes = fsdp.get("fsdp_transformer_layer_cls_to_wrap")
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=fsdp["fsdp_version"],
        auto_wrap_policy=fsdp["fsdp_auto_wrap_policy"].lower(),
        transformer_cls_names_to_wrap=layer_classes.split(",") if layer_classes else None,
    )
    for task, (model, num_layers) in tiny_models().items():
        policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
        wrapped = [type(module).__name__ for module in model.modules() if policy(module)]
        assert sum(name in ("BertLayer", "GPT2Block", "TransformerXLLayer") for name in wrapped) == num_layers, task
        assert not policy(model), task


@pytest.mark.parametrize("task", ["sentiment", "closed_book_qa"])
def test_max_seq_length_below_2_is_refused_at_parse(tmp_path, task):
    task_recipe = importlib.import_module(f"recipes.{task}.train")
    argv = [str(REPO / "recipes" / task / "configs" / "tiny.yaml"), "--output_dir", str(tmp_path)]
    with pytest.raises(ConfigError, match=r"max_seq_length must be at least 2, got 1"):
        parse_config(*task_recipe.CONFIG_CLASSES, argv=[*argv, "--max_seq_length", "1"])
