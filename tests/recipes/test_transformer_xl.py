"""The Transformer-XL recipe: ordered streams and memory across steps, on two real processes."""

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerFast, TrainingArguments

from custom_models.transfo_xl import TransformerXLForCausalLM
from custom_models.transfo_xl.sampled_losses import count_tokens, noise_log_probs_from_counts
from data.streams import StreamSegments, encode_stream
from data.synthetic import long_range_documents
from recipes.kit.command_line import parse_config
from recipes.kit.data_steps import load_corpus
from recipes.kit.errors import ConfigError
from recipes.kit.generation import GenerationArguments
from recipes.kit.model_config import load_model_config
from recipes.transformer_xl.memory_trainer import EvalMemory, MemoryTrainer
from recipes.transformer_xl.train import (
    CONFIG_CLASSES,
    TransformerXLDataArguments,
    TransformerXLModelArguments,
    main,
)
from tests.tiny_models import TRANSFO_XL, TRANSFO_XL_NO_DROPOUT, as_config_overrides, transfo_xl_config

WORKER = Path(__file__).with_name("stream_continuity_worker.py")


@pytest.mark.slow
@pytest.mark.parametrize("accumulation", [1, 3])
def test_each_rank_continues_its_own_streams_and_memory_across_steps(tmp_path, accumulation, launch):
    transfo_xl_config(vocab_size=1000, mem_len=8).save_pretrained(tmp_path / "config")
    launch(WORKER, str(tmp_path), str(accumulation), str(tmp_path / "config"))
    reports = [json.loads((tmp_path / f"calls_rank{rank}.json").read_text()) for rank in range(2)]
    first_ids = []
    for report in reports:
        assert report["world_size"] == 2
        calls = report["calls"]
        assert len(calls) == 5 * accumulation  # one forward per micro-batch
        assert calls[0]["mems_in"] is None  # streams start with no memory
        for before, after in zip(calls, calls[1:]):
            assert after["first"] == [last + 1 for last in before["last"]]  # row r continues row r
            assert after["mems_in"] == before["mems_out"]  # the memory returned is the memory passed on
        assert not any(call["mems_out_requires_grad"] for call in calls)
        first_ids.append({i for call in calls for i in call["first"]})
    assert max(first_ids[0]) < 500 <= min(first_ids[1])  # rank 0 owns the first half of the streams
    for report in reports:  # the gloo abort at exit (recipes.kit.distributed): no group thread lives on into it
        assert report["gloo_threads"]["before_leaving"] > 0  # the count sees a live group's threads
        assert report["gloo_threads"]["after_leaving"] == 0


def train_on_long_range_corpus(tmp_path: Path, mem_len: int) -> float:
    model_args = TransformerXLModelArguments(
        tokenizer_vocab_size=100,
        config_overrides=as_config_overrides(
            {**TRANSFO_XL, **TRANSFO_XL_NO_DROPOUT, "clamp_len": 0, "same_length": False}
        ),
        mem_len=mem_len,
    )
    data_args = TransformerXLDataArguments(
        train_file=str(tmp_path / "train.txt"), validation_file=str(tmp_path / "valid.txt"), tgt_len=4
    )
    training_args = TrainingArguments(
        output_dir=str(tmp_path / f"mem{mem_len}"),
        per_device_train_batch_size=8,
        per_device_eval_batch_size=4,
        num_train_epochs=3,
        learning_rate=3e-3,
        max_grad_norm=1.0,
        warmup_steps=20,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        do_train=True,
        do_eval=True,
    )
    return main(model_args, data_args, GenerationArguments(), training_args)["eval_loss"]


@pytest.mark.slow
def test_memory_beats_no_memory_on_a_corpus_that_needs_it(tmp_path):
    # Spans of 12 tokens repeat 13 positions later; segments are 4 tokens, so only memory reaches the copy.
    (tmp_path / "train.txt").write_text("\n".join(long_range_documents(num_documents=600, seed=0)) + "\n")
    (tmp_path / "valid.txt").write_text("\n".join(long_range_documents(num_documents=100, seed=1)) + "\n")
    with_memory = train_on_long_range_corpus(tmp_path, 16)
    # Without memory no model does better than chance on any of the 24 symbols of a document's 27 tokens
    # (<copy>, 12 symbols, <repeat>, 12 symbols, <eos>): each is uniform over 16 given its own segment. So
    # instead of training a memory-less model (2.77 measured), compare with that bound: 24/27 * ln(16) = 2.46.
    # With memory the repeated half is free (1.26 measured). A model that saw future tokens would pass too: the
    # causal masks are tested in tests/custom_models/test_transfo_xl.py.
    no_memory_bound = 24 / 27 * math.log(16)
    assert with_memory < 0.75 * no_memory_bound, with_memory


def test_streamed_evaluation_equals_one_full_pass_per_stream(tmp_path):
    model = TransformerXLForCausalLM(transfo_xl_config(vocab_size=30, mem_len=4)).eval()
    tokens = torch.randint(0, 30, (2 * 41,), generator=torch.Generator().manual_seed(0))
    dataset = StreamSegments(tokens, num_streams=2, tgt_len=7)  # 40 targets per row: 5 segments of 7, one of 5
    trainer = MemoryTrainer(
        model=model,
        args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"),
        eval_dataset=dataset,
        eval_memory=EvalMemory(mem_len=64),  # >= the stream: every token sees its whole past
    )
    metrics = trainer.evaluate()
    with torch.no_grad():
        full = model(input_ids=dataset.rows[:, :-1], target_ids=dataset.rows[:, 1:]).loss
    assert metrics["eval_tokens"] == dataset.num_scored_tokens == 2 * 40
    assert metrics["eval_loss"] == pytest.approx(full.item(), abs=1e-5)  # float32 sums over 80 tokens
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    assert model.config.mem_len == 4  # the evaluation memory length was only borrowed


def test_memory_of_one_process_is_re_split_over_two_as_their_streams_are():
    """The memory a 1-process run saved for its 4 streams, resumed on 2 processes with the same global batch: each
    process gets the memory rows of the streams it now walks (`StreamSegments`' split); resumed with another global
    batch (2 streams), none. Each memory row here holds its stream's tokens, so a wrong row shows."""
    tokens = torch.arange(40)
    one = StreamSegments(tokens, num_streams=4, tgt_len=5)
    saved = [{"layer_0": one.rows.float(), "layer_1": -one.rows.float()}]  # [b=4 streams, 10 positions]
    for rank in (0, 1):
        own = StreamSegments(tokens, num_streams=4, tgt_len=5, rank=rank, world_size=2)
        trainer = SimpleNamespace(train_dataset=own, args=SimpleNamespace(world_size=2, process_index=rank))
        share = MemoryTrainer.reshard_memory(trainer, saved)
        assert torch.equal(share["layer_0"], own.rows.float()) and torch.equal(share["layer_1"], -own.rows.float())
    fewer = StreamSegments(tokens, num_streams=2, tgt_len=5, rank=0, world_size=2)
    trainer = SimpleNamespace(train_dataset=fewer, args=SimpleNamespace(world_size=2, process_index=0))
    assert MemoryTrainer.reshard_memory(trainer, saved) is None


@pytest.mark.parametrize(
    ("name", "millions"),
    [
        ("wikitext103_base", 151),  # the paper's Table 1 "Transformer-XL Standard 151M"
        ("wikitext103_large", 285),  # the size of the 4.x transfo-xl-wt103 checkpoint of this model
    ],
)
def test_wikitext103_configs_build_the_papers_adaptive_models(name, millions):
    config_file = Path(__file__).resolve().parents[2] / "recipes/transformer_xl/configs" / f"{name}.yaml"
    model_args = parse_config(*CONFIG_CLASSES, argv=[str(config_file)])[0]
    config = load_model_config(model_args, vocab_size=model_args.tokenizer_vocab_size)
    assert config.vocab_size == 267735 and config.cutoffs == [20000, 40000, 200000]
    with torch.device("meta"):  # shapes only: no memory for 151M / 285M parameters
        model = TransformerXLForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, rel=0.01)


def tiny_lm_args(tmp_path: Path, **overrides) -> tuple:
    config_file = Path(__file__).resolve().parents[2] / "recipes/transformer_xl/configs/tiny.yaml"
    argv = [str(config_file), "--output_dir", str(tmp_path / "trained"), "--disable_tqdm", "true"]
    for key, value in overrides.items():
        argv += [f"--{key}", str(value)]
    return parse_config(*CONFIG_CLASSES, argv=argv)


@pytest.mark.slow
def test_evaluation_only_run_reproduces_the_trained_models_metrics_and_writes_nothing_else(tmp_path):
    samples = Path(__file__).resolve().parents[2] / "data/samples/lm"
    trained = main(*tiny_lm_args(tmp_path, max_steps=6, test_file=samples / "validation.txt"))
    eval_dir = tmp_path / "evaluated"
    evaluated = main(
        *tiny_lm_args(
            tmp_path,
            do_train="false",
            model_name_or_path=tmp_path / "trained",
            train_file="",
            test_file=samples / "validation.txt",
            output_dir=eval_dir,
        )
    )
    for key in ("eval_loss", "eval_tokens", "test_loss"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key
    assert evaluated["test_loss"] == pytest.approx(evaluated["eval_loss"], abs=1e-6)  # same file twice
    assert sorted(path.name for path in eval_dir.iterdir()) == [
        "all_results.json",
        "eval_results.json",
        "test_results.json",
    ]


@pytest.mark.slow
def test_evaluation_scores_the_same_tokens_to_the_same_perplexity_on_1_2_and_4_processes(tmp_path, tiny_run, launch):
    """An evaluation-only run of one trained folder, launched on 1, 2 and 4 processes, cuts the validation
    stream into the same 3 rows (a count that 2 and 4 do not divide) and walks them 2 at a time: 1 process
    holds rows {0, 1} and {2}; 2 processes {0, 1} | {2}; 4 processes {0} | {1} | {2} | none (a process with
    no row still joins the final sums). The tokens scored are every token after each row's first."""
    repo = Path(__file__).resolve().parents[2]
    recipe = repo / "recipes/transformer_xl"
    metrics = {}
    for processes in (1, 2, 4):
        output_dir = tmp_path / f"processes{processes}"
        launch(
            recipe / "train.py",
            str(recipe / "configs/tiny.yaml"),
            *("--do_train", "false", "--model_name_or_path", str(tiny_run("transformer_xl")), "--train_file", ""),
            *("--eval_num_streams", "3", "--per_device_eval_batch_size", "2"),
            *("--output_dir", str(output_dir), "--disable_tqdm", "true"),
            num_processes=processes,
        )
        metrics[processes] = json.loads((output_dir / "eval_results.json").read_text())
    # The word-level tokenizer gives one id per whitespace word (<unk> for the rest) and one <eos> per line.
    lines = (repo / "data/samples/lm/validation.txt").read_text().splitlines()
    num_tokens = sum(len(line.split()) + 1 for line in lines)
    assert [m["eval_tokens"] for m in metrics.values()] == [3 * (num_tokens // 3 - 1)] * 3
    # Each row gets the same predictions on any number of processes; only the batches holding them differ
    # (rows 0 and 1 together, or alone on 4 processes): float32 rounding of other matrix shapes (at most about
    # 1e-7 of a float32 mean; 3e-9 measured on 4 vs 1 process, 0 on 2 vs 1) and float64 sums in another order.
    # A row cut differently, or a token scored twice or not at all, moves the loss by far more (the layout that
    # depended on the process count: 9e-4 between 1 and 2 processes).
    for processes in (2, 4):
        for key in ("eval_loss", "eval_perplexity"):
            assert metrics[processes][key] == pytest.approx(metrics[1][key], rel=1e-6), (processes, key)


def test_eval_num_streams_below_one_is_refused_at_config_time(tmp_path):
    with pytest.raises(ConfigError, match="eval_num_streams must be >= 1, got 0"):
        tiny_lm_args(tmp_path, eval_num_streams=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"do_train": "false", "do_eval": "false"}, "nothing to do"),
        ({"do_train": "false"}, "give the trained model to evaluate or predict with as model_name_or_path"),
        ({"num_train_epochs": "-1"}, "trains nothing"),
    ],
)
def test_runs_that_cannot_do_anything_useful_fail_before_loading(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_lm_args(tmp_path, train_file=tmp_path / "missing.txt", **overrides)


@pytest.mark.slow
def test_nce_trained_model_saves_its_noise_and_evaluates_exactly_in_a_clean_process(tmp_path, forward_in_clean_process):
    model_args, data_args, generation_args, training_args = tiny_lm_args(
        tmp_path, max_steps=6, loss_type="nce", num_noise_samples=32, noise_power=0.75
    )
    metrics = main(model_args, data_args, generation_args, training_args)
    trained = tmp_path / "trained"
    assert math.isfinite(metrics["eval_log_partition_mean"]) and metrics["eval_log_partition_std"] >= 0

    # The noise is the distribution of the training stream, saved with the weights.
    tokenizer = PreTrainedTokenizerFast.from_pretrained(trained)
    stream = encode_stream(load_corpus(data_args, training_args)["train"], tokenizer)
    expected = noise_log_probs_from_counts(count_tokens([stream], vocab_size=len(tokenizer)), noise_power=0.75)
    assert torch.equal(load_file(trained / "model.safetensors")["noise_log_probs"], expected)

    # A clean process loads the shipped code and computes the exact loss: the cross-entropy of the logits.
    ids = stream[:65].view(1, -1)
    inputs = {"input_ids": ids[:, :-1].clone(), "target_ids": ids[:, 1:].clone()}  # safetensors: no shared memory
    loss = forward_in_clean_process(trained, "AutoModelForCausalLM", inputs, output_name="loss")
    logits = forward_in_clean_process(trained, "AutoModelForCausalLM", {"input_ids": ids[:, :-1]})
    exact = F.cross_entropy(logits[0].double(), ids[0, 1:])
    assert abs(loss.item() - exact.item()) < 1e-5  # float32 chunked log-sum-exp vs float64

    # An evaluation-only run of the saved folder reproduces the trained run's exact metrics.
    evaluated = main(
        *tiny_lm_args(
            tmp_path, do_train="false", model_name_or_path=trained, train_file="", output_dir=tmp_path / "evaluated"
        )
    )
    for key in ("eval_loss", "eval_log_partition_mean"):
        assert evaluated[key] == pytest.approx(metrics[key], abs=1e-6), key


@pytest.mark.slow
def test_a_resumed_nce_run_continues_its_memory_and_noise_to_the_same_weights(tmp_path):
    """Stopped at a checkpoint and resumed, a run with sampled noise ends with the weights of the run that was
    never stopped: the checkpoint restores the stream memory and the noise generator, not only the weights."""
    flags = {"max_steps": 10, "save_strategy": "steps", "save_steps": 5, "loss_type": "nce", "num_noise_samples": 16}
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    main(*tiny_lm_args(tmp_path, output_dir=straight, **flags))
    checkpoint = straight / "checkpoint-5"
    assert {"stream_memory_rank0.safetensors", "noise_generator_rank0.safetensors"} <= {
        p.name for p in checkpoint.iterdir()
    }
    shutil.copytree(checkpoint, resumed / "checkpoint-5")
    main(*tiny_lm_args(tmp_path, output_dir=resumed, **flags))  # resumes from checkpoint-5
    expected, actual = (load_file(folder / "model.safetensors") for folder in (straight, resumed))
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-6, rtol=0, msg=name)


@pytest.mark.slow
def test_gradient_checkpointing_flag_trains_with_the_same_losses(tmp_path):
    """`--gradient_checkpointing true` through the recipe: 2 steps (dropout on) log the same losses as
    without it, since the recomputation replays the same operations and dropout masks."""
    from tests.conftest import tiny_overrides

    losses = {}
    for flag in ("false", "true"):
        output_dir = tmp_path / flag
        main(
            *parse_config(
                *CONFIG_CLASSES,
                argv=[
                    str(Path(__file__).resolve().parents[2] / "recipes/transformer_xl/configs/tiny.yaml"),
                    *tiny_overrides("transformer_xl"),
                    "--output_dir",
                    str(output_dir),
                    "--max_steps",
                    "2",
                    "--logging_steps",
                    "1",
                    "--do_eval",
                    "false",
                    "--save_strategy",
                    "no",
                    "--gradient_checkpointing",
                    flag,
                ],
            )
        )
        history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
        losses[flag] = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses["true"]) == 2
    assert losses["true"] == pytest.approx(losses["false"], abs=1e-6)  # logged losses: float32 means
