"""The NCE recipe: sampled loss in training, exact perplexity and log Z figures in evaluation, the noise
distribution of the training tokens saved with the model (a resume that redraws the same noise: test_resume.py)."""

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainingArguments, default_data_collator

import custom_models  # noqa: F401  (registers the Auto classes)
from custom_models.nce_lm import NCELMForCausalLM, count_tokens, noise_log_probs_from_counts
from data.lm_corpus import load_text_corpus
from data.streams import SlidingWindows, encode_stream
from recipes.kit.command_line import parse_config
from recipes.kit.generation import GenerationArguments
from recipes.nce_lm.train import CONFIG_CLASSES, NCELMDataArguments, NCELMModelArguments, main
from tests.tiny_models import GPT2, as_config_overrides

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "recipes" / "nce_lm" / "configs" / "tiny.yaml"


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def tiny_args(
    output_dir: Path, **training
) -> tuple[NCELMModelArguments, NCELMDataArguments, GenerationArguments, TrainingArguments]:
    model_args = NCELMModelArguments(
        config_overrides=as_config_overrides({**GPT2, "n_positions": 32}),
        tokenizer_vocab_size=200,
        num_noise_samples=16,
        noise_power=0.75,
    )
    data_args = NCELMDataArguments(
        train_file=str(REPO / "data/samples/lm/train.txt"),
        validation_file=str(REPO / "data/samples/lm/validation.txt"),
        block_size=32,
    )
    defaults = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        max_steps=20,
        learning_rate=3e-3,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        do_train=True,
        do_eval=True,
    )
    return model_args, data_args, GenerationArguments(), TrainingArguments(**{**defaults, **training})


@pytest.fixture(scope="module")
def nce_run(tmp_path_factory):
    """One recipe run; records the training mode of every `lm_head` call (a full-vocabulary product)."""
    output_dir = tmp_path_factory.mktemp("nce") / "out"
    lm_head_calls = []
    original_init = NCELMForCausalLM.__init__

    def init_with_hook(self, config):
        original_init(self, config)
        self.lm_head.register_forward_hook(lambda module, *unused: lm_head_calls.append(module.training))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(NCELMForCausalLM, "__init__", init_with_hook)
        model_args, data_args, generation_args, training_args = tiny_args(output_dir)
        metrics = main(model_args, data_args, generation_args, training_args)
    return {
        "model_args": model_args,
        "data_args": data_args,
        "output_dir": output_dir,
        "metrics": metrics,
        "lm_head_calls": lm_head_calls,
    }


@pytest.mark.slow
def test_evaluation_reports_exact_perplexity_and_log_partition(nce_run):
    metrics = nce_run["metrics"]
    assert math.isfinite(metrics["eval_loss"]) and metrics["eval_loss"] > 0
    assert metrics["eval_perplexity"] == math.exp(metrics["eval_loss"])
    for name in ("mean", "std", "outlier_fraction"):
        assert math.isfinite(metrics[f"eval_log_partition_{name}"]), name
    assert 0.0 <= metrics["eval_log_partition_outlier_fraction"] <= 1.0
    assert (nce_run["output_dir"] / "eval_results.json").is_file()


@pytest.mark.slow
def test_evaluation_scores_every_token_after_the_first_once_with_the_saved_models_exact_loss(nce_run):
    model = AutoModelForCausalLM.from_pretrained(nce_run["output_dir"]).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(nce_run["output_dir"])
    corpus = load_text_corpus(
        train_file=nce_run["data_args"].train_file, validation_file=nce_run["data_args"].validation_file
    )
    stream = encode_stream(corpus["validation"]["text"], tokenizer)
    windows = SlidingWindows(stream, block_size=32, stride=16)  # the recipe's default stride: half a block
    with torch.no_grad():
        output = model(**default_data_collator(list(windows)))  # one batch: the loss is the scored tokens' mean
    metrics = nce_run["metrics"]
    assert stream.numel() == 4400 and metrics["eval_tokens"] == 4399  # the sample validation file, all but one
    # float32 model sums vs the recipe's float64 token-weighted sums over batches of 8 windows.
    assert metrics["eval_loss"] == pytest.approx(output.loss.item(), rel=1e-5)
    assert metrics["eval_log_partition_mean"] == pytest.approx(output.log_partition_mean.item(), abs=1e-5)
    assert metrics["eval_log_partition_std"] == pytest.approx(output.log_partition_std.item(), abs=1e-4)


@pytest.mark.slow
def test_training_never_builds_full_logits(nce_run):
    # lm_head runs only in eval mode (generation); the exact evaluation is fused with the output layer.
    assert not any(nce_run["lm_head_calls"])


@pytest.mark.slow
def test_saved_noise_is_the_distribution_of_the_training_tokens(nce_run):
    data_args, output_dir = nce_run["data_args"], nce_run["output_dir"]
    tokenizer = PreTrainedTokenizerFast.from_pretrained(output_dir)
    corpus = load_text_corpus(train_file=data_args.train_file, validation_file=data_args.validation_file)
    counts = count_tokens([encode_stream(corpus["train"]["text"], tokenizer)], vocab_size=len(tokenizer))
    expected = noise_log_probs_from_counts(counts, noise_power=0.75, smoothing=nce_run["model_args"].noise_smoothing)
    saved = load_file(output_dir / "model.safetensors")
    assert torch.equal(saved["noise_log_probs"], expected)


@pytest.mark.slow
def test_saved_folder_loads_in_a_clean_process_with_identical_eval_loss(nce_run, forward_in_clean_process):
    output_dir = nce_run["output_dir"]
    model = AutoModelForCausalLM.from_pretrained(output_dir).eval()
    input_ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": input_ids, "labels": input_ids.clone()}
    with torch.no_grad():
        expected = model(**inputs).loss
    # Same weights and code in both processes: equal up to the float rounding of the kernels picked.
    loss = forward_in_clean_process(output_dir, "AutoModelForCausalLM", inputs, output_name="loss")
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)
    generated = model.generate(input_ids[:1, :4], max_new_tokens=3, do_sample=False)
    assert generated.shape == (1, 7)
    assert (output_dir / "README.md").read_text().count("accelerate launch") == 1


@pytest.mark.slow
def test_a_truncated_token_cache_file_is_rebuilt_to_the_same_eval_loss(tmp_path, caplog):
    """Two identical short runs sharing a token cache; between them the validation ids are cut short, as a
    full disk or a killed copy leaves them. The second run names the file, tokenises again, and evaluates
    the same ids: the same evaluation loss, bit for bit (same process, same seed, same operations)."""
    model_args, data_args, generation_args, training_args = tiny_args(tmp_path / "first", max_steps=2)
    data_args.token_cache_dir = str(tmp_path / "cache")
    before = main(model_args, data_args, generation_args, training_args)["eval_loss"]
    (cached,) = (tmp_path / "cache").glob("validation-*.npy")
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])
    model_args, data_args, generation_args, training_args = tiny_args(tmp_path / "second", max_steps=2)
    data_args.token_cache_dir = str(tmp_path / "cache")
    with caplog.at_level("WARNING", logger="data.token_cache"):
        after = main(model_args, data_args, generation_args, training_args)["eval_loss"]
    assert after == before
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.name == "data.token_cache"] == [str(cached)]


@pytest.mark.parametrize(
    "flag, value",
    [
        ("loss_type", "softmax"),
        ("num_noise_samples", "0"),
        ("noise_power", "1.5"),
        ("noise_sharing", "step"),
        ("noise_smoothing", "0"),
        ("tokenizer_kind", "wordpiece"),
        ("block_size", "1"),
        ("eval_stride", "64"),
        ("eval_stride", "0"),
        ("config_overrides", "n_layer"),
    ],
)
def test_invalid_recipe_value_fails_at_parse_time(tmp_path, flag, value):
    argv = [str(TINY_YAML), "--output_dir", str(tmp_path), f"--{flag}", value]
    with pytest.raises(ValueError, match=flag if flag != "config_overrides" else "key=value"):
        parse_config(*CONFIG_CLASSES, argv=argv)
