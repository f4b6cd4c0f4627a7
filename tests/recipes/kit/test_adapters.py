"""A folder of LoRA adapters saved unmerged (`merge_lora_on_save false`, recipes/kit/adapters.py) works wherever a
merged folder does: evaluate-only and predict give the metrics of the run that wrote it, PEFT's Auto classes and
`pipeline` load it in a process that cannot import this repository, and `python -m recipes.merge_adapter` writes
the folder the same run merged on save. Sentiment is built from a config (its base saved in `base/`); closed-book
QA starts from a local checkpoint, which its adapters name. Each recipe trains twice per module (adapters only,
then merged on save, with the same command)."""

import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from recipes.kit.adapters import BASE_FOLDER, load_adapter_model
from recipes.kit.command_line import parse_config
from recipes.kit.errors import ConfigError
from recipes.merge_adapter import main as merge_adapter_main
from tests.recipes.kill_worker import kill_worker_command
from tests.recipes.kit.test_model_loading import save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[3]
SENTIMENT_VALIDATION = REPO / "data" / "samples" / "sentiment" / "validation.tsv"
#: The validation rows each recipe scores, in training and in evaluate-only runs; QA: the checkpoint's config.
EVAL_FLAGS = {
    "sentiment": ["--max_eval_samples", "24"],
    "closed_book_qa": ["--max_eval_samples", "8", "--config_overrides", ""],
}
SHORT = ["--max_steps", "4", "--eval_strategy", "no", "--use_lora", "true"]  # QA's tiny.yaml saves no checkpoint
FLAGS = {
    "sentiment": [  # a checkpoint at step 2: the run killed after it resumes from it
        *SHORT,
        *["--save_strategy", "steps", "--save_steps", "2"],
        *["--load_best_model_at_end", "false", "--learning_rate", "0.02", *EVAL_FLAGS["sentiment"]],
    ],
    "closed_book_qa": [*SHORT, "--learning_rate", "0.01", *EVAL_FLAGS["closed_book_qa"]],
}
AUTO_CLASSES = {"sentiment": AutoModelForSequenceClassification, "closed_book_qa": AutoModelForCausalLM}
TEXTS = ["the acting was thrilling", "question: what is 7 minus 2\nanswer:"]


def run_recipe(task: str, output_dir: Path, *flags: str) -> dict[str, float]:
    """`task`'s tiny.yaml with `flags`, in this process on one thread; returns `main`'s metrics."""
    recipe = importlib.import_module(f"recipes.{task}.train")
    argv = [str(REPO / "recipes" / task / "configs" / "tiny.yaml"), "--output_dir", str(output_dir), *flags]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared machine: more threads only fight other jobs
    try:
        return recipe.main(*parse_config(*recipe.CONFIG_CLASSES, argv=argv))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`runs(task) -> {"adapter": DIR, "merged": DIR, "metrics": ...}`: the adapter-only run's folder and final
    metrics, and the folder of the same command with `merge_lora_on_save true`."""
    done = {}

    def run(task: str) -> dict:
        if task not in done:
            root = tmp_path_factory.mktemp(f"lora-{task}")
            flags = FLAGS[task]
            if task == "closed_book_qa":
                save_tiny_checkpoint(root / "checkpoint")
                flags = [*flags, "--model_name_or_path", str(root / "checkpoint")]
            metrics = run_recipe(task, root / "adapter", *flags, "--merge_lora_on_save", "false")
            run_recipe(task, root / "merged", *flags, "--merge_lora_on_save", "true")
            done[task] = {"adapter": root / "adapter", "merged": root / "merged", "metrics": metrics}
        return done[task]

    return run


def model_inputs(folder: Path) -> dict[str, torch.Tensor]:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sentiment", "closed_book_qa"])
def test_evaluate_only_on_the_adapter_folder_gives_the_metrics_of_its_run(task, runs, tmp_path):
    run = runs(task)
    flags = ["--do_train", "false", "--model_name_or_path", str(run["adapter"]), *EVAL_FLAGS[task]]
    metrics = run_recipe(task, tmp_path / "eval", *flags)
    names = ["eval_accuracy", "eval_macro_f1", "eval_loss"] if task == "sentiment" else ["eval_exact_match", "eval_f1"]
    # The same modules (a PeftModel on the same base) and weights on one machine: equal to the last bit.
    assert {name: metrics[name] for name in names} == {name: run["metrics"][name] for name in names}
    if task == "closed_book_qa":  # every generated answer, not only their scores
        predictions = "eval_predictions.jsonl"
        assert (tmp_path / "eval" / predictions).read_text() == (run["adapter"] / predictions).read_text()


@pytest.mark.slow
def test_predict_on_the_adapter_folder_labels_the_test_split_as_evaluate_scores_it(runs, tmp_path):
    """The validation file as the test split too: predict scores it as evaluate does (evaluate's own numbers are
    those of the training run: the test above)."""
    flags = ["--do_train", "false", "--model_name_or_path", str(runs("sentiment")["adapter"])]
    flags += ["--do_predict", "true", "--test_file", str(SENTIMENT_VALIDATION)]
    metrics = run_recipe("sentiment", tmp_path / "predict", *flags)
    rows = (tmp_path / "predict" / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == len(SENTIMENT_VALIDATION.read_text().splitlines()) - 1  # one per sentence (no header)
    assert {json.loads(row)["label"] for row in rows} <= {"negative", "positive"}
    for name in ("accuracy", "macro_f1", "loss"):  # the same model, rows and batches
        assert metrics[f"predict_{name}"] == metrics[f"eval_{name}"], name


@pytest.mark.slow
def test_a_killed_adapter_run_resumes_and_its_rerun_evaluates_the_folder(runs, tmp_path):
    """The adapter-only sentiment run, SIGKILLed at step 3, rerun with the same command: it resumes from
    checkpoint-2 and saves the adapters of the uninterrupted run; rerun once more, it finds the run finished and
    evaluates the folder as saved, with the uninterrupted run's metrics."""
    run, output_dir = runs("sentiment"), tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the uninterrupted run trained on one thread too

    def launch(kill_at_step: int) -> subprocess.CompletedProcess:
        flags = [*FLAGS["sentiment"], "--merge_lora_on_save", "false", "--seed", "42"]  # after kill_worker's: win
        command = [sys.executable, *kill_worker_command("sentiment", output_dir, kill_at_step, flags)]
        return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)

    assert launch(kill_at_step=3).returncode == -signal.SIGKILL
    assert (output_dir / "checkpoint-2").is_dir() and not (output_dir / "adapter_model.safetensors").exists()
    resumed = launch(kill_at_step=-1)
    assert resumed.returncode == 0 and "resuming from" in resumed.stderr, resumed.stderr[-3000:]
    expected, actual = (load_file(folder / "adapter_model.safetensors") for folder in (run["adapter"], output_dir))
    assert expected.keys() == actual.keys()
    for key in expected:  # the same steps on the same thread count: equal to the last bit
        assert torch.equal(actual[key], expected[key]), key
    rerun = launch(kill_at_step=-1)
    assert rerun.returncode == 0 and "holds a finished run" in rerun.stderr, rerun.stderr[-3000:]
    metrics = json.loads((output_dir / "eval_results.json").read_text())
    names = ["eval_accuracy", "eval_macro_f1", "eval_loss"]
    assert {name: metrics[name] for name in names} == {name: run["metrics"][name] for name in names}


@pytest.mark.slow
def test_adapter_weights_that_do_not_fit_the_model_are_refused_naming_them(runs, tmp_path):
    """PEFT only warns of a missing adapter weight and keeps it as initialised (lora_B: zeros), which would
    evaluate a model other than the one trained."""
    folder = shutil.copytree(runs("sentiment")["adapter"], tmp_path / "copy")
    weights = load_file(folder / "adapter_model.safetensors")
    dropped = sorted(key for key in weights if "lora_B" in key)[0]
    save_file({key: value for key, value in weights.items() if key != dropped}, folder / "adapter_model.safetensors")
    with pytest.raises(ConfigError, match=rf"adapter missing_keys.*{re.escape(dropped)}"):
        load_adapter_model(AutoModelForSequenceClassification, folder)


_PEFT_FORWARD = """
import sys, peft, torch, transformers
from safetensors.torch import load_file, save_file
adapter_dir, auto_class, task, inputs_file, out_file = sys.argv[1:]
inputs = load_file(inputs_file)
auto_model = getattr(peft, auto_class).from_pretrained(adapter_dir, trust_remote_code=True).eval()
pipe = transformers.pipeline(task, model=adapter_dir, trust_remote_code=True)
assert type(pipe.model).__module__.startswith("transformers_modules") == (task == "text-classification")
with torch.no_grad():
    outputs = {"auto_peft": auto_model(**inputs).logits, "pipeline": pipe.model.eval()(**inputs).logits}
save_file({name: logits.contiguous() for name, logits in outputs.items()}, out_file)
"""
PEFT_CLASSES = {
    "sentiment": ("AutoPeftModelForSequenceClassification", "text-classification"),
    "closed_book_qa": ("AutoPeftModelForCausalLM", "text-generation"),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sentiment", "closed_book_qa"])
def test_peft_auto_class_and_pipeline_load_the_adapter_folder_in_a_clean_process(task, runs, tmp_path, clean_process):
    adapter = runs(task)["adapter"]
    inputs = model_inputs(adapter)
    model = load_adapter_model(AUTO_CLASSES[task], adapter)  # as evaluate-only loads it
    base = AUTO_CLASSES[task].from_pretrained(
        json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    )
    with torch.no_grad():
        expected, without_adapters = model.eval()(**inputs).logits, base.eval()(**inputs).logits
    assert not torch.equal(expected, without_adapters)  # the adapters change the function: they must be loaded
    save_file(inputs, tmp_path / "inputs.safetensors")
    clean_process(
        _PEFT_FORWARD,
        str(adapter),
        *PEFT_CLASSES[task],
        str(tmp_path / "inputs.safetensors"),
        str(tmp_path / "out.safetensors"),
        cwd=tmp_path,
    )
    for name, logits in load_file(tmp_path / "out.safetensors").items():
        torch.testing.assert_close(logits, expected, atol=0, rtol=0, msg=name)  # same weights and ops, one machine


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sentiment", "closed_book_qa"])
def test_merge_adapter_writes_the_folder_merged_on_save(task, runs, tmp_path):
    run = runs(task)
    merge_adapter_main([str(run["adapter"]), str(tmp_path / "merged")])
    expected, actual = (load_file(folder / "model.safetensors") for folder in (run["merged"], tmp_path / "merged"))
    assert expected.keys() == actual.keys()
    for key in expected:  # PEFT's merge_and_unload on the same base and adapters: bit-equal
        assert torch.equal(actual[key], expected[key]), key
    inputs = model_inputs(tmp_path / "merged")
    merged_on_save, merged = (
        AUTO_CLASSES[task].from_pretrained(folder, trust_remote_code=True).eval()
        for folder in (run["merged"], tmp_path / "merged")
    )
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits, merged_on_save(**inputs).logits, atol=0, rtol=0)
    for name in ("tokenizer.json", "tokenizer_config.json", "README.md"):
        assert (tmp_path / "merged" / name).read_bytes() == (run["adapter"] / name).read_bytes(), name
    assert (
        not (tmp_path / "merged" / BASE_FOLDER).exists() and not (tmp_path / "merged" / "adapter_config.json").exists()
    )
