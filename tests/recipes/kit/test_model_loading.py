"""The Model step (`recipes.kit.model_loading` and the recipes' own loaders): the loading fields reach the model
built from a config, a local folder or a Hub revision (tiny runs of the QA recipe's main, in-process unless
stated, and the sentiment recipe's encoder checkpoint); a checkpoint with its own model code loads only with
`--trust_remote_code true`."""

import hashlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, BertModel, GPT2LMHeadModel, TrainingArguments

from custom_models.nce_lm import NCELMForCausalLM
from data.tokenizers import train_tokenizer
from recipes.closed_book_qa import train as qa_recipe
from recipes.closed_book_qa.packed_attention import PACKED_ROWS_ATTENTION
from recipes.kit.command_line import parse_config
from recipes.kit.errors import hub_ids, user_error_message
from recipes.kit.loading_options import prepare_for_kbit_training
from recipes.kit.model_config import load_model_config
from recipes.sentiment import train as sentiment_recipe
from tests import tiny_models
from tests.conftest import sentiment_tokenizer_dir, tiny_overrides

REPO = Path(__file__).resolve().parents[3]
QA_TINY = str(REPO / "recipes" / "closed_book_qa" / "configs" / "tiny.yaml")


def publish_to_hub_cache(cache: Path, repo_id: str, folder: Path, revision: str = "main") -> None:
    """Puts `folder` in the Hub cache `cache` as `repo_id` at `revision`, laid out as a download leaves it, so
    that offline loads of `repo_id` read it at that revision (and fail for a revision it does not hold)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)


def save_tiny_checkpoint(
    folder: Path, model_class: type = GPT2LMHeadModel, config_fn=tiny_models.gpt2_config, **fields
):
    """A pretrained checkpoint stand-in in `folder`: a byte-level BPE tokenizer trained on the sample text and a
    tiny causal LM over its vocabulary, in float32."""
    lines = (REPO / "data" / "samples" / "lm" / "train.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = train_tokenizer(lines, kind="bpe", vocab_size=300)
    tokenizer.save_pretrained(folder)
    eos = tokenizer.eos_token_id
    config = config_fn(vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos, **fields)
    model_class(config).save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    save_tiny_checkpoint(folder)
    return folder


@pytest.fixture
def built_models(monkeypatch) -> list:
    """`(model, kwargs, weights)` of every model the QA recipe builds through `AutoModelForCausalLM`
    (`from_pretrained`, `from_config`): the model, the keyword arguments of the call, and a copy of its weights
    as they were built."""
    built = []
    for name in ("from_pretrained", "from_config"):
        real = getattr(AutoModelForCausalLM, name)

        def spy(*args, _real=real, **kwargs):
            model = _real(*args, **kwargs)
            built.append((model, kwargs, {n: p.detach().clone() for n, p in model.named_parameters()}))
            return model

        monkeypatch.setattr(AutoModelForCausalLM, name, spy)
    return built


def run_qa(tmp_path: Path, *flags: str) -> Path:
    """Two training steps of the QA recipe's tiny.yaml (no evaluation) with `flags`; returns its output_dir."""
    output_dir = tmp_path / "out"
    argv = [QA_TINY, "--output_dir", str(output_dir), "--max_steps", "2", "--do_eval", "false", "--logging_steps", "1"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared machine
    try:
        qa_recipe.main(*parse_config(*qa_recipe.CONFIG_CLASSES, argv=[*argv, "--disable_tqdm", "true", *flags]))
    finally:
        torch.set_num_threads(threads)
    return output_dir


def training_losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.mark.slow
@pytest.mark.parametrize(("source", "attn_implementation"), [("config", "eager"), ("folder", "sdpa")])
def test_dtype_and_attn_implementation_reach_the_model(
    tmp_path, tiny_checkpoint, built_models, source, attn_implementation
):
    model_flags = (
        tiny_overrides("closed_book_qa")
        if source == "config"
        else ["--model_name_or_path", str(tiny_checkpoint), "--config_overrides", ""]
    )
    run_qa(tmp_path, *model_flags, "--dtype", "bfloat16", "--attn_implementation", attn_implementation)
    ((model, kwargs, _),) = built_models
    assert kwargs["dtype"] == torch.bfloat16 and kwargs["attn_implementation"] == attn_implementation
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # the checkpoint holds float32 weights
    # Trained on padding-free batches (the recipe's default), sdpa runs on each packed row: its registered variant.
    trained_with = PACKED_ROWS_ATTENTION if attn_implementation == "sdpa" else attn_implementation
    assert model.config._attn_implementation == trained_with


@pytest.mark.slow
def test_model_revision_reaches_from_pretrained(tmp_path, monkeypatch, built_models):
    cache = tmp_path / "hub-cache"
    save_tiny_checkpoint(tmp_path / "main", n_layer=1)
    save_tiny_checkpoint(tmp_path / "v1", n_layer=2)
    publish_to_hub_cache(cache, "someone/tiny-gpt2", tmp_path / "main")
    publish_to_hub_cache(cache, "someone/tiny-gpt2", tmp_path / "v1", revision="v1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    flags = ["--model_name_or_path", "someone/tiny-gpt2", "--config_overrides", ""]

    run_qa(tmp_path, *flags, "--model_revision", "v1")
    ((model, kwargs, _),) = built_models
    assert kwargs["revision"] == "v1" and model.config.n_layer == 2  # main's has one layer

    parsed = parse_config(
        *qa_recipe.CONFIG_CLASSES,
        argv=[QA_TINY, "--output_dir", str(tmp_path / "v9"), *flags, "--model_revision", "v9"],
    )
    with pytest.raises(OSError) as raised:
        qa_recipe.main(*parsed)
    message = user_error_message(raised.value, hub_ids(parsed))
    assert message.startswith("model_name_or_path 'someone/tiny-gpt2' / model_revision 'v9': not a local folder and")


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None,
    reason="bitsandbytes is not installed (pip install '.[quantization]')",
)
def test_qlora_trains_adapters_on_a_frozen_4bit_base(tmp_path, tiny_checkpoint, built_models):
    output_dir = run_qa(
        tmp_path,
        *["--model_name_or_path", str(tiny_checkpoint), "--config_overrides", "", "--load_in_4bit", "true"],
        *["--use_lora", "true", "--merge_lora_on_save", "false"],
    )
    ((model, _, built),) = built_models
    assert any(type(module).__name__ == "Linear4bit" for module in model.modules())  # loaded in 4 bits
    for name, parameter in model.named_parameters():
        if "lora_" not in name:
            assert not parameter.requires_grad, name
            original = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(parameter.detach(), built[original].to(parameter.dtype)), name  # the base is frozen
    losses = training_losses(output_dir)
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    adapters = load_file(output_dir / "adapter_model.safetensors")
    lora_b = [tensor for key, tensor in adapters.items() if "lora_B" in key]
    assert lora_b and all(tensor.abs().sum() > 0 for tensor in lora_b)  # lora_B starts at zero: the adapters trained


# The QA recipe run as a user runs it, twice (the flags after `--`, then those with `--trust_remote_code true`),
# in one process where this repository's model packages cannot be imported: a checkpoint with custom code then
# loads only from the code in its own repository. Prints each run's exit status.
_QA_WITHOUT_MODEL_PACKAGES = """
import importlib.abc, runpy, sys
class _BlockModelPackages(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "custom_models":
            raise ImportError(f"{name} must come from the checkpoint's own code")
sys.meta_path.insert(0, _BlockModelPackages())
script, flags = sys.argv[1], sys.argv[3:]
for extra in ([], ["--trust_remote_code", "true"]):
    sys.argv = [script, *flags, *extra]
    try:
        runpy.run_path(script, run_name="__main__")
        print("exit status 0")
    except SystemExit as exit:
        print(f"exit status {exit.code}")
    sys.stderr.flush()
"""


@pytest.mark.slow
def test_trust_remote_code_lets_the_qa_recipe_fine_tune_a_pushed_nce_lm(tmp_path, local_hub):
    save_tiny_checkpoint(tmp_path / "nce", NCELMForCausalLM, tiny_models.nce_lm_config, n_layer=1)
    repo_id = "someone/nce-lm-tiny"
    NCELMForCausalLM.from_pretrained(tmp_path / "nce").push_to_hub(repo_id)  # the real push, to the stand-in Hub
    AutoTokenizer.from_pretrained(tmp_path / "nce").push_to_hub(repo_id)
    publish_to_hub_cache(tmp_path / "hub-cache", repo_id, local_hub.repo(repo_id))  # as a user's download leaves it
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(tmp_path / "hub-cache"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    flags = [QA_TINY, "--model_name_or_path", repo_id, "--config_overrides", "", "--output_dir", str(tmp_path / "out")]
    # The default answer-only loss: the NCE LM's `logits_to_keep` takes the answer mask, as GPT-2's does.
    flags += ["--max_steps", "2", "--do_eval", "false", "--logging_steps", "1"]
    script = str(REPO / "recipes" / "closed_book_qa" / "train.py")
    command = [sys.executable, "-c", _QA_WITHOUT_MODEL_PACKAGES, script, "--", *flags, "--disable_tqdm", "true"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    statuses = [line for line in result.stdout.splitlines() if line.startswith("exit status")]
    assert statuses == ["exit status 2", "exit status 0"], result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]  # the refused run's
    assert (
        errors[0].startswith(f"error: {repo_id} ships its own model code") and "--trust_remote_code true" in errors[0]
    )
    assert "runs the Python files of that repository" in errors[0]
    losses = training_losses(tmp_path / "out")  # the run with the flag
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "nce-gpt2"


@pytest.fixture(scope="module")
def tiny_bert_checkpoint(tmp_path_factory) -> Path:
    """A pretrained encoder stand-in: a tiny BERT over the sentiment tests' WordPiece vocabulary, in float32."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(sentiment_tokenizer_dir())
    tokenizer.save_pretrained(folder)
    BertModel(tiny_models.bert_config(vocab_size=len(tokenizer))).save_pretrained(folder)
    return folder


def sentiment_checkpoint_model(tmp_path: Path, checkpoint: Path, *flags: str) -> torch.nn.Module:
    """The model the sentiment recipe trains from the encoder `checkpoint` with `flags`, as its `main` builds it."""
    argv = [str(REPO / "recipes/sentiment/configs/tiny.yaml"), "--output_dir", str(tmp_path / "out")]
    argv += ["--model_name_or_path", str(checkpoint), "--config_overrides", "", *flags]
    model_args = parse_config(*sentiment_recipe.CONFIG_CLASSES, argv=argv)[0]
    return sentiment_recipe.load_checkpoint(model_args, load_model_config(model_args))


def test_sentiment_encoder_and_new_head_load_in_bf16(tmp_path, tiny_bert_checkpoint):
    model = sentiment_checkpoint_model(tmp_path, tiny_bert_checkpoint, "--dtype", "bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # the checkpoint is float32; the head new
    logits = model(input_ids=torch.tensor([[2, 40, 41, 3]])).logits
    assert logits.dtype == torch.bfloat16 and logits.shape == (1, 2)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes is not installed")
def test_sentiment_encoder_loads_in_4bit_under_a_float_head(tmp_path, tiny_bert_checkpoint):
    qlora = ["--load_in_4bit", "true", "--use_lora", "true", "--merge_lora_on_save", "false"]
    model = sentiment_checkpoint_model(tmp_path, tiny_bert_checkpoint, *qlora)
    assert any(type(module).__name__ == "Linear4bit" for module in model.encoder.modules())
    assert {p.dtype for p in model.classifier.parameters()} == {torch.float32}
    assert torch.isfinite(model(input_ids=torch.tensor([[2, 40, 41, 3]])).logits).all()
    prepared = prepare_for_kbit_training(model, TrainingArguments(output_dir=str(tmp_path), use_cpu=True))
    assert not any(p.requires_grad for p in prepared.parameters())  # frozen until the adapters are added
