"""The argument classes hold values and check them; loading is done by the plain functions each `main` calls
(`recipes.kit.model_config`, `recipes.kit.run_steps`), with the model config checked before any data loads."""

import dataclasses
import importlib
import traceback
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, BertConfig, PretrainedConfig

from recipes.kit.arguments import DataArguments, ModelArguments
from recipes.kit.command_line import parse_config
from recipes.kit.errors import ConfigError
from tests.tiny_models import transfo_xl_config

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


def test_a_bad_config_overrides_key_fails_before_the_data_is_read(tmp_path):
    """Against a checkpoint the keys are checked on its config, read by `check_checkpoint_config`, first in `main`."""
    transfo_xl_config(vocab_size=50, mem_len=8).save_pretrained(tmp_path / "checkpoint")
    recipe = _recipe("transformer_xl")
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
    recipe = _recipe("sentiment")
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
