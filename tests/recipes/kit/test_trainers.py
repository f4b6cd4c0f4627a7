"""`RecipeTrainer`: a model card with Hub front matter, the command as typed and the resolved configuration;
tokenizer files without machine-local keys; metrics files that name the best checkpoint's step."""

import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from transformers import AutoTokenizer, TrainingArguments

from data.tokenizers import train_tokenizer
from recipes.kit.command_line import parse_config
from recipes.kit.model_card import CardInfo, model_card, resolved_configuration, typed_command
from recipes.kit.trainers import RecipeTrainer
from recipes.transformer_xl import train as transformer_xl
from tests.custom_models.test_bert_mlp import tiny_model

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


def test_saved_tokenizer_config_has_no_machine_local_keys(tmp_path):
    train_tokenizer(["the quiet sea", "a busy city"], kind="wordpiece", vocab_size=50).save_pretrained(tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")  # offline (conftest): local_files_only recorded
    assert "local_files_only" in tokenizer.init_kwargs  # what transformers would save
    trainer = RecipeTrainer(
        model=tiny_model(), args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True), processing_class=tokenizer
    )
    trainer.save_model()
    saved = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert not {"local_files_only", "is_local", "cache_dir", "token"} & set(saved), sorted(saved)


@pytest.mark.slow
def test_tiny_run_card_and_metrics_name_the_best_checkpoint(tiny_run):
    output_dir = tiny_run("sentiment")  # load_best_model_at_end, one checkpoint per epoch
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{state['best_global_step']}")
    for name in ("eval_results.json", "train_results.json", "all_results.json"):
        assert json.loads((output_dir / name).read_text())["best_global_step"] == state["best_global_step"], name
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.pipeline_tag == "text-classification"
    assert {result.metric_type for result in card.data.eval_results} == {"eval_accuracy", "eval_loss", "eval_macro_f1"}
    assert str(REPO) not in card.text and "train_file:\n- data/samples/sentiment/train.tsv" in card.text
