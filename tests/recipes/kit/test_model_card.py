"""`recipes.kit.model_card`: a model card with Hub front matter, the command as typed and the resolved
configuration."""

import dataclasses
from pathlib import Path

import yaml
from huggingface_hub import ModelCard

from recipes.kit.command_line import parse_config
from recipes.kit.model_card import CardInfo, model_card, resolved_configuration, typed_command
from recipes.transformer_xl import train as transformer_xl

REPO = Path(__file__).resolve().parents[3]


def test_typed_command_makes_repository_paths_relative_and_hides_tokens():
    argv = [str(REPO / "recipes/sentiment/train.py"), str(REPO / "recipes/sentiment/configs/tiny.yaml")]
    argv += ["--output_dir", "/elsewhere/out", "--hub_token", "hf_secret", "--hub_token=hf_other", "--seed", "1"]
    argv += ["--train_file", str(REPO / "data/samples/sentiment/train.tsv")]
    command = typed_command(argv)
    assert command.startswith("accelerate launch recipes/sentiment/train.py recipes/sentiment/configs/tiny.yaml ")
    assert "hf_secret" not in command and "hf_other" not in command
    assert "--output_dir /elsewhere/out" in command and "--seed 1" in command  # outside the repository: as typed
    assert "--train_file data/samples/sentiment/train.tsv" in command


def test_card_front_matter_is_hub_metadata_with_eval_results():
    info = CardInfo(
        title="T",
        data="sst2 sentences",
        notes="A note.",
        task_type="text-classification",
        metrics={"eval_accuracy": 0.75},
        arguments=(),
        base_model="google-bert/bert-base-uncased",
        dataset_id="stanfordnlp/sst2",
    )
    card = ModelCard(str(model_card(info, extra_tags=["extra"])))
    assert card.data.base_model == "google-bert/bert-base-uncased" and card.data.datasets == ["stanfordnlp/sst2"]
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-classification"
    assert set(card.data.tags) == {"finetune-recipes", "extra"}
    (result,) = card.data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_type) == ("eval_accuracy", 0.75, "stanfordnlp/sst2")
    assert "| eval_accuracy | 0.7500 |" in card.text and "sst2 sentences" in card.text


def test_resolved_configuration_reads_back_as_the_same_run(tmp_path):
    argv = [str(REPO / "recipes/transformer_xl/configs/tiny.yaml"), "--output_dir", str(tmp_path), "--tgt_len", "16"]
    resolved = resolved_configuration(parse_config(*transformer_xl.CONFIG_CLASSES, argv=argv))
    assert str(REPO) not in resolved and yaml.safe_load(resolved)["train_file"] == ["data/samples/lm/train.txt"]
    assert yaml.safe_load(resolved)["tokenizer_vocab_size"] == 500  # a "token" field that is no secret
    (tmp_path / "resolved.yaml").write_text(resolved)
    again = parse_config(*transformer_xl.CONFIG_CLASSES, argv=[str(tmp_path / "resolved.yaml")])
    assert resolved_configuration(again) == resolved and again[1].tgt_len == 16  # the data arguments


def test_a_pinned_data_set_revision_is_in_the_front_matter_and_the_resolved_configuration(tmp_path):
    argv = [str(REPO / "recipes/transformer_xl/configs/tiny.yaml"), "--output_dir", str(tmp_path)]
    arguments = parse_config(*transformer_xl.CONFIG_CLASSES, argv=[*argv, "--dataset_revision", "v1.0"])
    info = CardInfo(
        title="T",
        data="data",
        notes="",
        task_type=None,
        metrics={},
        arguments=arguments,
        dataset_id="org/data",
        dataset_revision="v1.0",
    )
    card = ModelCard(str(model_card(info)))
    assert card.data.datasets == ["org/data"] and card.data.dataset_revision == "v1.0"
    resolved = resolved_configuration(arguments)
    assert yaml.safe_load(resolved)["dataset_revision"] == "v1.0" and resolved in card.text
    (tmp_path / "resolved.yaml").write_text(resolved)
    again = parse_config(*transformer_xl.CONFIG_CLASSES, argv=[str(tmp_path / "resolved.yaml")])
    assert again[1].dataset_revision == "v1.0"
    unpinned = ModelCard(str(model_card(dataclasses.replace(info, dataset_revision=None))))
    assert "dataset_revision" not in unpinned.data.to_dict() and unpinned.data.datasets == ["org/data"]
