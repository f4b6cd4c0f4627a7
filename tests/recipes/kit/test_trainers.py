"""`RecipeTrainer` (`recipes.kit.trainers`): tokenizer files without machine-local keys; the model card a run writes
(its parts: tests/recipes/kit/test_model_card.py) and metrics files that name the best checkpoint's step."""

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from transformers import AutoTokenizer, TrainingArguments

from data.tokenizers import train_tokenizer
from recipes.kit.trainers import RecipeTrainer
from tests.custom_models.test_bert_mlp import tiny_model

REPO = Path(__file__).resolve().parents[3]


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
