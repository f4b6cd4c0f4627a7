"""A failure the user can fix is one line, `error: <message>`, and exit status 2, from the command line as a
user types it (a fresh process, offline); `FINETUNE_RECIPES_DEBUG=1` brings the traceback back."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from transformers import GPT2LMHeadModel

from custom_models.encoder_mlp import EncoderMLPConfig, EncoderMLPForSequenceClassification
from data.tokenizers import train_tokenizer
from tests.tiny_models import bert_config, gpt2_config

REPO = Path(__file__).resolve().parents[2]
TXL = ["recipes/transformer_xl/train.py", "recipes/transformer_xl/configs/tiny.yaml"]
NCE = ["recipes/nce_lm/train.py", "recipes/nce_lm/configs/tiny.yaml"]
SENTIMENT = ["recipes/sentiment/train.py", "recipes/sentiment/configs/tiny.yaml"]
QA = ["recipes/closed_book_qa/train.py", "recipes/closed_book_qa/configs/tiny.yaml"]


def _sentiment_model_without_tokenizer(folder: Path) -> None:
    """A sentiment model folder as a run saves it (the tiny config's shapes), its tokenizer files removed."""
    config = EncoderMLPConfig(encoder=bert_config(vocab_size=300), mlp_hidden_sizes=[32], pooling="mean", num_labels=2)
    EncoderMLPForSequenceClassification(config).save_pretrained(folder)


def _tiny_gpt2(folder: Path) -> None:
    """A saved tiny GPT-2 language model with its byte-level BPE tokenizer (no padding token, as GPT-2's)."""
    lines = (REPO / "data" / "samples" / "lm" / "train.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = train_tokenizer(lines, kind="bpe", vocab_size=300)
    tokenizer.save_pretrained(folder)
    special = {"bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id}
    GPT2LMHeadModel(gpt2_config(vocab_size=len(tokenizer), **special)).save_pretrained(folder)


# What a refusal's command reads besides the shipped files, written into the test's folder: name -> writer.
INPUTS: dict[str, Callable[[Path], None]] = {
    "a_file": lambda path: path.write_text("not a folder\n"),
    "three_tokens.txt": lambda path: path.write_text("the river\n"),  # with the <eos> of its line: 3 tokens
    "blank.txt": lambda path: path.write_text("\n"),  # 1 token, the <eos>
    "trained": _sentiment_model_without_tokenizer,
    "gpt2": _tiny_gpt2,
}

# name -> (command after `python`, words the message must hold); {tmp} is the test's folder, which holds
# what `INPUTS` writes that the command names.
REFUSALS = {
    "missing_validation_file": (
        [*TXL, "--validation_file", "{tmp}/missing.txt", "--output_dir", "{tmp}/out"],
        ["validation_file", "missing.txt", "no such file"],
    ),
    "config_overrides_not_yaml": (
        [*TXL, "--config_overrides", "cutoffs=[20,40", "--output_dir", "{tmp}/out"],
        ["config_overrides", "'cutoffs=[20,40'"],
    ),
    "output_dir_is_a_file": ([*TXL, "--output_dir", "{tmp}/a_file"], ["output_dir", "a_file", "is a file"]),
    "hub_id_offline": (
        [*TXL, "--model_name_or_path", "someone/not-downloaded", "--do_train", "false", "--output_dir", "{tmp}/out"],
        ["model_name_or_path 'someone/not-downloaded'", "HF_HUB_OFFLINE"],
    ),
    "value_of_the_wrong_type": (
        [*TXL, "--learning_rate", "abc", "--output_dir", "{tmp}/out"],
        ["--learning_rate", "invalid float value: 'abc'", "--help"],
    ),
    "resume_from_missing_checkpoint": (
        [*TXL, "--resume_from_checkpoint", "{tmp}/no_such_checkpoint", "--output_dir", "{tmp}/out"],
        ["resume_from_checkpoint", "no_such_checkpoint", "no such folder"],
    ),
    "max_seq_length_above_the_positions": (
        [*SENTIMENT, "--max_seq_length", "256", "--output_dir", "{tmp}/out"],
        ["max_seq_length 256 > 64 tokens", "max_position_embeddings"],
    ),
    "qa_max_seq_length_above_the_positions": (
        [*QA, "--max_seq_length", "256", "--output_dir", "{tmp}/out"],
        ["max_seq_length 256 > 128 tokens", "n_positions"],
    ),
    "tokenizer_files_removed": (
        [*SENTIMENT, "--do_train", "false", "--model_name_or_path", "{tmp}/trained", "--output_dir", "{tmp}/out"],
        ["trained has no tokenizer", "tokenizer.json", "tokenizer_config.json", "tokenizer_name"],
    ),
    "decoder_as_sentiment_encoder": (
        [*SENTIMENT, "--model_name_or_path", "{tmp}/gpt2", "--config_overrides", "", "--output_dir", "{tmp}/out"],
        ["model_name_or_path", "gpt2", "decoder", "BERT, RoBERTa"],
    ),
    "transformer_xl_corpus_too_small": (
        [*TXL, "--train_file", "{tmp}/three_tokens.txt", "--do_eval", "false", "--output_dir", "{tmp}/out"],
        ["three_tokens.txt: 3 tokens", "8 streams", "lower per_device_train_batch_size"],
    ),
    "nce_corpus_blank": (
        [*NCE, "--train_file", "{tmp}/blank.txt", "--do_eval", "false", "--output_dir", "{tmp}/out"],
        ["blank.txt: 1 tokens", "block_size 64", "lower block_size"],
    ),
    "nce_validation_blank": (
        [*NCE, "--validation_file", "{tmp}/blank.txt", "--output_dir", "{tmp}/out"],
        ["blank.txt: 1 tokens", "nothing to score"],
    ),
    "convert_legacy_hub_id_offline": (
        ["-m", "custom_models.transfo_xl.convert_legacy", "someone/not-downloaded", "{tmp}/converted"],
        ["someone/not-downloaded", "HF_HUB_OFFLINE"],
    ),
}


def _run(name: str, tmp_path: Path, *, debug: bool) -> subprocess.CompletedProcess:
    command = [arg.format(tmp=tmp_path) for arg in REFUSALS[name][0]]
    for input_name, write in INPUTS.items():
        if any(f"{tmp_path}/{input_name}" in arg for arg in command):
            write(tmp_path / input_name)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("FINETUNE_RECIPES_DEBUG", None)
    if debug:
        env["FINETUNE_RECIPES_DEBUG"] = "1"
    return subprocess.run([sys.executable, *command], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_refusal_is_one_error_line_and_status_2(name, tmp_path):
    result = _run(name, tmp_path, debug=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "usage:" not in result.stderr, result.stderr[-3000:]  # argparse's dump of every flag
    for words in REFUSALS[name][1]:
        assert words in errors[0], errors[0]


@pytest.mark.slow
def test_missing_validation_file_is_refused_before_the_tokenizer_is_trained(tmp_path):
    result = _run("missing_validation_file", tmp_path, debug=False)
    assert result.returncode == 2 and "validation_file" in result.stderr, result.stderr[-3000:]
    assert "tokenizer:" not in result.stderr, result.stderr[-3000:]  # the recipes log that step first


@pytest.mark.slow
@pytest.mark.parametrize("name", ["config_overrides_not_yaml", "convert_legacy_hub_id_offline"])
def test_debug_variable_brings_the_traceback_back(name, tmp_path):
    result = _run(name, tmp_path, debug=True)
    assert result.returncode != 0 and "Traceback" in result.stderr, result.stderr[-3000:]
