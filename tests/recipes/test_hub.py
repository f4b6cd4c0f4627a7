"""Hub round trip for every recipe, offline: the real `push_to_hub` code runs with only the Hub boundary
replaced (`local_hub`), pushes made during training and at the end hold everything a user needs, and what
was pushed loads through the Auto classes in a process that cannot import this repository."""

import importlib
from pathlib import Path

import pytest
import torch
import transformers

from recipes.kit.command_line import parse_config
from tests.conftest import tiny_overrides

REPO = Path(__file__).resolve().parents[2]
SECRET = "hf_secret_token_value"

# Per recipe: its Auto class, whether the model class ships as code (transformers' GPT-2 does not need
# to), the files it shares with the generic ones below, and flags that keep the run tiny.
RECIPES = {
    "sentiment": (
        "AutoModelForSequenceClassification",
        True,
        ["modeling_encoder_mlp.py", "configuration_encoder_mlp.py", "mlp_head.py"],
        ["--load_best_model_at_end", "false"],  # the final push must hold the last weights, not step 2's
    ),
    "closed_book_qa": (
        "AutoModelForCausalLM",
        False,
        ["generation_config.json"],
        [*tiny_overrides("closed_book_qa"), "--max_eval_samples", "4", "--max_new_tokens", "2"],
    ),
    "nce_lm": (
        "AutoModelForCausalLM",
        True,
        ["modeling_nce_lm.py", "configuration_nce_lm.py", "generation_config.json"],
        ["--block_size", "32"],
    ),
    "transformer_xl": (
        "AutoModelForCausalLM",
        True,
        [
            "modeling_transfo_xl.py",
            "configuration_transfo_xl.py",
            "sampled_losses.py",  # with linear_cross_entropy.py, copies of the NCE package's files
            "linear_cross_entropy.py",
            "generation_config.json",
        ],
        ["--tgt_len", "16", "--mem_len", "16"],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(RECIPES))
def test_pushes_during_and_after_training_load_in_a_clean_process(
    tmp_path, task, local_hub, forward_in_clean_process, monkeypatch
):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    auto_class, remote_code, task_files, flags = RECIPES[task]
    recipe = importlib.import_module(f"recipes.{task}.train")
    output_dir, repo_id = tmp_path / "out", f"someone/{task}-tiny"
    argv = [
        str(REPO / "recipes" / task / "configs" / "tiny.yaml"),
        "--output_dir",
        str(output_dir),
        "--max_steps",
        "4",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--push_to_hub",
        "true",
        "--hub_model_id",
        repo_id,
        "--hub_private_repo",
        "true",
        "--disable_tqdm",
        "true",
        *flags,
    ]
    metrics = recipe.main(*parse_config(*recipe.CONFIG_CLASSES, argv=argv))

    remote = local_hub.repo(repo_id)
    for name in ["model.safetensors", "config.json", "tokenizer_config.json", "README.md", *task_files]:
        assert (remote / name).is_file(), name
    # Weights as safetensors only (Trainer's own `training_args.bin` is not a weight file and is never loaded).
    assert not list(remote.glob("checkpoint-*")) and not list(remote.glob("pytorch_model*")), sorted(remote.iterdir())
    card = (remote / "README.md").read_text()
    assert "accelerate launch" in card
    assert any(f"{value:.4f}" in card for key, value in metrics.items() if key.startswith("eval_")), card
    assert [call[:2] for call in local_hub.calls][0] == ("create_repo", repo_id)
    for path in local_hub.root.rglob("*"):  # the token (from the environment) is in no pushed file
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path

    model = getattr(transformers, auto_class).from_pretrained(output_dir, trust_remote_code=True).eval()
    inputs = {
        "input_ids": torch.randint(
            0, model.get_input_embeddings().num_embeddings, (2, 12), generator=torch.Generator().manual_seed(0)
        )
    }
    with torch.no_grad():
        expected = model(**inputs).logits
    pushed = forward_in_clean_process(remote, auto_class, inputs, remote_code=remote_code)
    assert (remote / "model.safetensors").read_bytes() == (output_dir / "model.safetensors").read_bytes()
    # Same weights, same code: equal logits up to float32 rounding. Not bit for bit across processes: MKL's sgemm
    # may take another path in another process (it chooses by data alignment), which once moved a logit near 2 by
    # 6 ulps (1.4e-6) in a CI run; rtol 2e-6 is ~16 ulps, far below what a changed weight or op moves.
    torch.testing.assert_close(pushed, expected, atol=1e-6, rtol=2e-6)
    first_push = local_hub.snapshots[repo_id][0]  # made at the step-2 checkpoint, mid-training
    assert (first_push / "model.safetensors").is_file()
    mid_training = forward_in_clean_process(first_push, auto_class, inputs, remote_code=remote_code)
    assert mid_training.shape == expected.shape and not torch.equal(mid_training, expected)
