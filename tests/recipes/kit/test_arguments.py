"""`recipes.kit.arguments`: the argument classes hold values and check them, and read nothing while parsed (loading
is done by the plain functions each `main` calls: tests/recipes/kit/test_model_config.py); `parse_overrides`
types the values of `--config_overrides`."""

import dataclasses
import importlib
from pathlib import Path

import pytest
from transformers import AutoConfig, BertConfig, PretrainedConfig

from recipes.kit.arguments import DataArguments, ModelArguments, TextCorpusArguments, parse_overrides
from recipes.kit.command_line import parse_config
from recipes.kit.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
TASKS = sorted(path.parent.name for path in (REPO / "recipes").glob("*/train.py"))


def _recipe(task: str):
    return importlib.import_module(f"recipes.{task}.train")


def test_parsing_reads_no_checkpoint_config(tmp_path, monkeypatch):
    """A sentiment config whose `model_name_or_path` is a folder with a `config.json`, with overrides: parsing
    checks the values without opening the folder (the config is read by `check_checkpoint_config`, in `main`)."""
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(
        tmp_path / "encoder"
    )

    def refuse(*args, **kwargs):
        raise AssertionError("a config was read while parsing")

    monkeypatch.setattr(AutoConfig, "from_pretrained", refuse)
    monkeypatch.setattr(PretrainedConfig, "get_config_dict", refuse)
    recipe = _recipe("sentiment")
    argv = [str(REPO / "recipes/sentiment/configs/tiny.yaml"), "--output_dir", str(tmp_path / "out")]
    argv += ["--model_name_or_path", str(tmp_path / "encoder"), "--config_overrides", "hidden_dropout_prob=0.0"]
    model_args = parse_config(*recipe.CONFIG_CLASSES, argv=argv)[0]
    assert model_args.model_name_or_path == str(tmp_path / "encoder")


@pytest.mark.parametrize("task", TASKS)
def test_data_arguments_declare_the_shared_data_fields_once(task):
    """Each recipe has one data-arguments class, a `DataArguments`; it redeclares a shared field only to give it
    another default, and no other argument class of the recipe declares one."""
    shared = {field.name: field for field in dataclasses.fields(DataArguments)}
    classes = _recipe(task).CONFIG_CLASSES
    (data_class,) = [cls for cls in classes if issubclass(cls, DataArguments)]
    assert sum(issubclass(cls, ModelArguments) for cls in classes) == 1
    for cls in data_class.__mro__[: data_class.__mro__.index(DataArguments)]:
        for name in set(vars(cls).get("__annotations__", {})) & set(shared):
            assert vars(cls)[name] != shared[name].default, f"{cls.__name__} redeclares {name} unchanged"
    for cls in classes:
        if cls is not data_class:
            assert not {field.name for field in dataclasses.fields(cls)} & set(shared), cls.__name__


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
