"""Recipe configuration: YAML values, command-line overrides, misspelt keys and secrets."""

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from transformers import TrainingArguments

from recipes.kit.arguments import DataArguments, TextCorpusArguments, parse_overrides
from recipes.kit.command_line import parse_config
from recipes.kit.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parents[3] / "recipes"


def write_yaml(path, values):
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return str(path)


def test_command_line_overrides_yaml(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path), "learning_rate": 1e-3, "seed": 7})
    (args,) = parse_config(TrainingArguments, argv=[config, "--learning_rate", "5e-5"])
    assert args.learning_rate == 5e-5 and args.seed == 7


def test_misspelt_yaml_key_fails_by_name(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path), "learning_rat": 1e-3})
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key\(s\) \['learning_rat'\]"):
        parse_config(TrainingArguments, argv=[config])


def test_removed_transformers_4_keys_fail_by_name(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path), "evaluation_strategy": "steps"})
    with pytest.raises(ConfigError, match="evaluation_strategy"):
        parse_config(TrainingArguments, argv=[config])


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


def test_use_cpu_defaults_to_true_without_an_accelerator(tmp_path):
    # On an accelerator-less machine this default is what makes `--multi_gpu` launches really distributed.
    (args,) = parse_config(TrainingArguments, argv=["--output_dir", str(tmp_path)])
    assert args.use_cpu == (not torch.accelerator.is_available())


def test_parse_overrides_types_values_and_rejects_garbage():
    assert parse_overrides("n_layer=2, d_model=64,pre_lnorm=true,act=gelu") == {
        "n_layer": 2,
        "d_model": 64,
        "pre_lnorm": True,
        "act": "gelu",
    }
    assert parse_overrides("cutoffs=[20, 40],tie_projs=[false,true,true],div_val=4") == {
        "cutoffs": [20, 40],
        "tie_projs": [False, True, True],
        "div_val": 4,
    }
    assert parse_overrides(None) == {}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides("n_layer")


def test_preprocessing_num_workers_is_positive_and_refused_where_nothing_reads_it():
    assert DataArguments(preprocessing_num_workers=2).preprocessing_num_workers == 2
    with pytest.raises(ValueError, match="preprocessing_num_workers must be at least 1, got 0"):
        DataArguments(preprocessing_num_workers=0)
    with pytest.raises(ValueError, match="preprocessing_num_workers: a language-model corpus is tokenised once"):
        TextCorpusArguments(preprocessing_num_workers=2)
