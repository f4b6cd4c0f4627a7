"""`recipes.kit.arguments`: the argument classes hold values and check them, and read nothing while parsed (loading
is done by the plain functions each `main` calls: tests/recipes/kit/test_model_config.py); `parse_overrides`
types the values of `--config_overrides`; the data fields (several files per split, `validation_split_percentage`, a
weighted `dataset_mixture`) that cannot work are refused at parse time, naming the flag or the entry."""

import dataclasses
import importlib
import json
from pathlib import Path

import pytest
from transformers import AutoConfig, BertConfig, PretrainedConfig

from recipes.closed_book_qa.train import CONFIG_CLASSES as QA_CLASSES
from recipes.kit.arguments import DataArguments, ModelArguments, TextCorpusArguments, parse_overrides
from recipes.kit.command_line import parse_config
from recipes.kit.errors import ConfigError
from recipes.sentiment.train import CONFIG_CLASSES as SENTIMENT_CLASSES
from recipes.transformer_xl.train import CONFIG_CLASSES as TXL_CLASSES
from tests.conftest import yaml_without

REPO = Path(__file__).resolve().parents[3]
TASKS = sorted(path.parent.name for path in (REPO / "recipes").glob("*/train.py"))
SENTIMENT_YAML = REPO / "recipes" / "sentiment" / "configs" / "tiny.yaml"
QA_YAML = REPO / "recipes" / "closed_book_qa" / "configs" / "tiny.yaml"
TXL_YAML = REPO / "recipes" / "transformer_xl" / "configs" / "tiny.yaml"


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


def test_several_training_files_on_the_command_line_or_in_yaml_make_a_list(tmp_path):
    argv = [str(SENTIMENT_YAML), "--output_dir", str(tmp_path), "--train_file", "a.tsv", "b.tsv"]
    assert parse_config(*SENTIMENT_CLASSES, argv=argv)[1].train_file == ["a.tsv", "b.tsv"]
    argv = [str(SENTIMENT_YAML), "--output_dir", str(tmp_path)]  # tiny.yaml: one file, as a string
    assert parse_config(*SENTIMENT_CLASSES, argv=argv)[1].validation_file == ["data/samples/sentiment/validation.tsv"]


@pytest.mark.parametrize(
    ("config", "classes", "flags", "words"),
    [
        (SENTIMENT_YAML, SENTIMENT_CLASSES, ["--validation_split_percentage", "0"], "must lie in 1..99"),
        (QA_YAML, QA_CLASSES, ["--validation_split_percentage", "100"], "must lie in 1..99"),
        (
            SENTIMENT_YAML,
            SENTIMENT_CLASSES,
            ["--dataset_mixture", '[{"path": "a.tsv", "weight": 0.5}, {"path": "b.tsv", "weight": 2}]'],
            r"dataset_mixture\[1\] \(b.tsv\): weight",
        ),
        (
            SENTIMENT_YAML,
            SENTIMENT_CLASSES,
            ["--dataset_mixture", '[{"path": "a.tsv"}]'],
            "give train_file or dataset_mixture, not both",
        ),
        (TXL_YAML, TXL_CLASSES, ["--dataset_mixture", '[{"path": "a.txt"}]'], "give train_file as a list of files"),
        (SENTIMENT_YAML, SENTIMENT_CLASSES, ["--dataset_revision", ""], "dataset_revision must be a branch, tag"),
        (TXL_YAML, TXL_CLASSES, ["--dataset_revision", " "], "dataset_revision must be a branch, tag"),
    ],
)
def test_data_flags_that_cannot_work_fail_at_parse_time(tmp_path, config, classes, flags, words):
    with pytest.raises(ConfigError, match=words):
        parse_config(*classes, argv=[str(config), "--output_dir", str(tmp_path / "out"), *flags])


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ('[{"path": "a.tsv", "weight": 0}]', r"dataset_mixture\[0\] \(a.tsv\): weight"),
        ('[{"weight": 0.5}]', r"dataset_mixture\[0\]: path must be"),
        ('["a.tsv"]', r"dataset_mixture\[0\]: expected a mapping"),
        ('[{"path": "hub/name", "split": 1}]', r"dataset_mixture\[0\] \(hub/name\): split must be a name"),
        ('[{"path": "hub/name", "revision": ""}]', r"dataset_mixture\[0\] \(hub/name\): revision must be a name"),
        ('[{"path": "hub/name", "revision": 1.0}]', r"dataset_mixture\[0\] \(hub/name\): revision must be a name"),
        ("[]", "expected a non-empty list"),
        ("[{path: a.tsv}]", "not a JSON list"),
    ],
)
def test_a_bad_mixture_on_the_command_line_fails_naming_the_entry(tmp_path, entries, words):
    config = yaml_without(SENTIMENT_YAML, tmp_path, "train_file")
    with pytest.raises(ConfigError, match=words):
        parse_config(
            *SENTIMENT_CLASSES, argv=[config, "--output_dir", str(tmp_path / "out"), "--dataset_mixture", entries]
        )


def test_a_mixture_from_json_or_yaml_parses_to_the_same_entries(tmp_path):
    entries = [{"path": "a.tsv", "weight": 0.75}, {"path": "org/data", "weight": 0.25, "split": "train"}]
    yaml_entries = (
        "dataset_mixture:\n  - {path: a.tsv, weight: 0.75}\n  - {path: org/data, weight: 0.25, split: train}\n"
    )
    from_yaml = yaml_without(SENTIMENT_YAML, tmp_path, "train_file", extra=yaml_entries)
    parsed_yaml = parse_config(*SENTIMENT_CLASSES, argv=[from_yaml, "--output_dir", str(tmp_path / "out")])[1]
    argv = [yaml_without(SENTIMENT_YAML, tmp_path, "train_file"), "--output_dir", str(tmp_path / "out")]
    parsed_json = parse_config(*SENTIMENT_CLASSES, argv=[*argv, "--dataset_mixture", json.dumps(entries)])[1]
    assert parsed_yaml.dataset_mixture == parsed_json.dataset_mixture
    assert parsed_json.dataset_mixture[1] == {
        "path": "org/data",
        "weight": 0.25,
        "split": "train",
        "dataset_config_name": None,
        "revision": None,
    }


def test_a_bad_mixture_entry_in_yaml_fails_naming_it(tmp_path):
    extra = "dataset_mixture:\n  - {path: a.tsv, weight: 0.5}\n  - {path: b.tsv, fraction: 0.5}\n"
    config = yaml_without(SENTIMENT_YAML, tmp_path, "train_file", extra=extra)
    with pytest.raises(ConfigError, match=r"dataset_mixture\[1\]: unknown key\(s\) \['fraction'\]"):
        parse_config(*SENTIMENT_CLASSES, argv=[config, "--output_dir", str(tmp_path / "out")])
