"""A failure the user can fix is one line, `error: <message>`, and exit status 2, from the command line as a
user types it (a fresh process, offline); `FINETUNE_RECIPES_DEBUG=1` brings the traceback back."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TXL = ["recipes/transformer_xl/train.py", "recipes/transformer_xl/configs/tiny.yaml"]

# name -> (command after `python`, words the message must hold); {tmp} is the test's folder, which holds a
# file named `a_file`.
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
    "convert_legacy_hub_id_offline": (
        ["-m", "custom_models.transfo_xl.convert_legacy", "someone/not-downloaded", "{tmp}/converted"],
        ["someone/not-downloaded", "HF_HUB_OFFLINE"],
    ),
}


def _run(name: str, tmp_path: Path, *, debug: bool) -> subprocess.CompletedProcess:
    (tmp_path / "a_file").write_text("not a folder\n")
    command = [arg.format(tmp=tmp_path) for arg in REFUSALS[name][0]]
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
