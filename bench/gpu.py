"""One prepared GPU check (issue #32 item 6): every recipe at real scale for a few dozen steps, in one go.

    python bench/gpu.py --device cuda --json bench/results/gpu.json     # on one GPU, in under 8 minutes
    python bench/gpu.py --device cpu --tiny --json /tmp/gpu.json        # the same code paths, tiny shapes, < 1 min

A GPU is lent to this project now and then, for minutes, so this check is one script that runs in one go and
prints one table (and writes it as JSON with `--json`). `--device cpu --tiny` runs the same code on tiny shapes;
CI runs it (`tests/bench/test_gpu_script.py`), so the script cannot rot between GPU loans.

Targets (the issue's): the whole GPU run under 8 minutes (the wall time is printed under the table), the
`--device cpu --tiny` run under a minute. Every figure in the table: recorded, no target.

Parts, one row each:
recipes. Each recipe's real-scale YAML (`--tiny`: its `tiny.yaml`, 4 rows a batch), trained by its own `Trainer`
    class for `--steps` optimizer steps after `WARMUP_STEPS`: Transformer-XL `wikitext103_base.yaml` (the paper's base
    model, adaptive softmax over 267,735 words, 8 streams x 150 tokens, memory 150), NCE LM `wikitext103_gpt2.yaml`
    (GPT-2 124M, NCE k = 1024, 8 x 1024 tokens x 4 accumulated), closed-book QA `nq_open_gpt2.yaml` (GPT-2 124M,
    answer-only loss, 64 rows of `max_seq_length` 64) and sentiment `sst2_bert_base.yaml` (BERT-base + MLP head, 32
    rows of 128 tokens). The YAML is parsed by the recipe's own `parse_config` and the model's config built by the
    kit's `build_model_config` with the recipe's fields; no weights are reachable here, so a checkpoint named by
    the YAML is stood in for by its architecture's default config, which has its shapes (`GPT2Config()` is gpt2's,
    `BertConfig()` bert-base-uncased's), and the weights are random. Data: random tokens of the real shapes
    (Zipf-distributed for the language models, as words are), in the recipe's own datasets and collators: every
    row full length (the padded worst case). The YAML's training settings are kept (batch, accumulation, optimizer,
    clipping, bf16 on CUDA; float32 on CPU), evaluation and saving turned off.
qa adapters. The QA recipe with LoRA (`--use_lora true`: r 16 on `c_attn`) and with QLoRA (`--load_in_4bit true`,
    the base quantised by bitsandbytes), both loaded by the recipe's `load_model` from a folder of the same random
    GPT-2 saved first. QLoRA needs bitsandbytes and CUDA; without them the row says it was skipped and why.
loss. One forward + backward of the output layer and its loss at 267,735 words (`--tiny`: 1,000), 8,192 tokens x
    d 1,024 (`--tiny`: 64 x 32), bf16 inputs on CUDA: the full softmax (`F.cross_entropy` on the whole logits), the
    fused exact loss (`custom_models/nce_lm/linear_cross_entropy.py`, the `chunked` / `full` loss of the
    language-model recipes, at its default block) and Liger Kernel's `LigerFusedLinearCrossEntropyLoss` (when
    `liger-kernel` is installed, on CUDA). The loss's difference from the full softmax's is in the notes.
fsdp2. The QA recipe under FSDP2 on a world of one process: the environment `accelerate launch` writes for
    `recipes/accelerate_configs/fsdp.yaml` (gloo and `fsdp_cpu.yaml`'s switch on CPU), the recipe's `Trainer`
    wrapping each `GPT2Block` in `fully_shard`; read against the plain QA row for FSDP2's overhead on one device.

Method. Each row runs in its own process, forked from this one (imports paid once), so that its peak memory is its
own: `torch.cuda.max_memory_allocated` on CUDA (weights, optimizer state, activations); on CPU the process's peak
RSS (`ru_maxrss`, the interpreter and libraries included). Tokens/s: the tokens of the timed optimizer steps over
their wall time (the step ends synchronised on CUDA), counting every input token of a step (all accumulated
micro-batches). Model FLOPs utilisation: 6 x parameters (all, embeddings included; the attention's own FLOPs left
out) x tokens/s over the device's dense bf16 peak (`PEAK_BF16_FLOPS`; n/a for another GPU or a CPU); a LoRA row,
whose frozen weights get no gradient, does less than 6 N per token, so its figure overstates.
"""

import argparse
import contextlib
import importlib.util
import json
import math
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from _cli import add_run_flags
from _machine import machine_line
from torch.distributed.elastic.utils.distributed import get_free_port
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BertConfig,
    GenerationConfig,
    GPT2Config,
    TrainerCallback,
    default_data_collator,
    set_seed,
)

from custom_models.nce_lm import NCELMConfig
from custom_models.nce_lm.linear_cross_entropy import default_chunk_size, linear_cross_entropy
from data.qa_features import TemplatePrompts
from data.streams import StreamSegments, TokenBlocks
from recipes.closed_book_qa import train as qa_recipe
from recipes.closed_book_qa.answer_loss import QATrainer
from recipes.closed_book_qa.padding_free import training_collator
from recipes.kit.adapters import add_lora_adapters
from recipes.kit.arguments import LoraArguments
from recipes.kit.command_line import parse_config
from recipes.kit.distributed import leave_process_group, shard_on_cpu_processes
from recipes.kit.language_models import set_training_noise
from recipes.kit.model_config import build_model_config
from recipes.kit.model_loading import load_model
from recipes.kit.trainers import RecipeTrainer
from recipes.nce_lm import train as nce_recipe
from recipes.nce_lm.nce_trainer import NCETrainer
from recipes.sentiment import train as sentiment_recipe
from recipes.transformer_xl import train as txl_recipe
from recipes.transformer_xl.memory_trainer import MemoryTrainer

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
WARMUP_STEPS = {"real": 3, "tiny": 1}
DEFAULT_STEPS = {"real": 30, "tiny": 1}
TINY_FLAGS = ("--per_device_train_batch_size", "4")  # the tiny YAMLs' other shapes, smaller batches
LOSS_SHAPES = {"real": (267_735, 8192, 1024), "tiny": (1000, 64, 32)}  # vocabulary, tokens, width
ANSWER_TOKENS = 8  # of each QA row, the rest prompt (labels -100)
QLORA_UNAVAILABLE = "skipped: bitsandbytes/CUDA unavailable"
#: Dense (no sparsity) bf16 tensor-core peaks, FLOP/s, from NVIDIA's data sheets: H100 SXM 989.4 TFLOPS (PCIe
#: 756), H200 SXM 989 (the same compute as H100 SXM, more memory), A100 312. First match of the device name wins.
PEAK_BF16_FLOPS = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12))


@dataclass(frozen=True)
class Recipe:
    """A recipe as this bench drives it: its `train` module, its real-scale YAML, the Auto class, the stand-in
    for the checkpoint its YAML names (None: the YAML trains a new model) and the special token ids a new model of
    the recipe gets from its tokenizer (here all 0)."""

    module: object
    real_config: str
    auto_class: type
    stand_in: Callable[[object], object] | None
    special_ids: tuple[str, ...]


LM_IDS = ("bos_token_id", "eos_token_id")
RECIPES = {
    "transformer_xl": Recipe(txl_recipe, "wikitext103_base.yaml", AutoModelForCausalLM, None, ()),
    "nce_lm": Recipe(nce_recipe, "wikitext103_gpt2.yaml", AutoModelForCausalLM, lambda args: NCELMConfig(), LM_IDS),
    "closed_book_qa": Recipe(
        qa_recipe, "nq_open_gpt2.yaml", AutoModelForCausalLM, lambda args: GPT2Config(), (*LM_IDS, "pad_token_id")
    ),
    "sentiment": Recipe(
        sentiment_recipe,
        "sst2_bert_base.yaml",
        AutoModelForSequenceClassification,
        lambda args: args.as_recipe_config(BertConfig()),
        ("pad_token_id",),
    ),
}


class StepClock(TrainerCallback):
    """The wall-clock time at the end of every optimizer step (CUDA synchronised first)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def parsed_recipe(name: str, options: argparse.Namespace, output_dir: str, *flags: str) -> tuple:
    """The recipe's dataclasses from its YAML (real or tiny) by its own `parse_config`, with evaluation, saving and
    reporting off, `max_steps` warm-up + timed steps, and the precision of `options.device`."""
    recipe = RECIPES[name]
    config = RECIPES_DIR / name / "configs" / ("tiny.yaml" if options.tiny else recipe.real_config)
    on_cuda = options.device == "cuda"
    argv = [
        str(config),
        *("--output_dir", output_dir, "--max_steps", str(options.warmup + options.steps), "--report_to", "none"),
        *("--do_eval", "false", "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false"),
        *("--logging_strategy", "no", "--disable_tqdm", "true", "--dataloader_num_workers", "0"),
        *("--seed", str(options.seed)),
        *("--bf16", str(on_cuda).lower(), "--use_cpu", str(not on_cuda).lower()),
        *(TINY_FLAGS if options.tiny else ()),
        *flags,
    ]
    return parse_config(*recipe.module.CONFIG_CLASSES, argv=argv)


def recipe_model(name: str, model_args, training_args):
    """The recipe's model built from its config (module docstring): the stand-in checkpoint config, or a new
    model sized by `tokenizer_vocab_size`, under the recipe's fields and `config_overrides`; random weights."""
    recipe = RECIPES[name]
    checkpoint = recipe.stand_in(model_args) if recipe.stand_in and model_args.model_name_or_path else None
    special = dict.fromkeys(recipe.special_ids, 0)
    config = build_model_config(model_args, checkpoint, vocab_size=model_args.tokenizer_vocab_size, **special)
    return recipe.auto_class.from_config(config)


def vocabulary_size(model) -> int:
    """The model's vocabulary (a classifier's: its encoder's)."""
    return getattr(model.config, "encoder", model.config).vocab_size


def zipf_stream(vocab_size: int, tokens: int, seed: int) -> torch.Tensor:
    """`tokens` ids drawn from Zipf's law over `vocab_size` ids (p of rank r ∝ 1/r)."""
    weights = 1.0 / torch.arange(1, vocab_size + 1, dtype=torch.float64)
    return torch.multinomial(weights, tokens, replacement=True, generator=torch.Generator().manual_seed(seed))


def random_rows(vocab_size: int, *, rows: int, length: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return list(torch.randint(1, vocab_size, (rows, length), generator=generator))


def recipe_trainer(name: str, parsed: tuple, model, clock: StepClock):
    """The recipe's `Trainer` class on random data of the YAML's shapes, and the input tokens of one optimizer
    step."""
    model_args, data_args, training_args = parsed[0], parsed[1], parsed[-1]
    micro_steps = (training_args.max_steps + 1) * training_args.gradient_accumulation_steps
    batch, vocab, seed = training_args.per_device_train_batch_size, vocabulary_size(model), training_args.seed
    common = {"model": model, "args": training_args, "callbacks": [clock]}
    if name in ("transformer_xl", "nce_lm"):
        length = data_args.tgt_len if name == "transformer_xl" else data_args.block_size
        stream = zipf_stream(vocab, batch * length * micro_steps + 1, seed)
        if getattr(model.config, "loss_type", None) in ("nce", "ranking"):
            noise_power = getattr(model_args, "noise_power", model.config.noise_power)
            set_training_noise(model, stream, noise_power=noise_power, reset_output_bias=True)
        if name == "transformer_xl":
            segments = StreamSegments(stream, num_streams=batch, tgt_len=length)
            trainer = MemoryTrainer(train_dataset=segments, **common)
        else:
            trainer = NCETrainer(
                train_dataset=TokenBlocks(stream, block_size=length), data_collator=default_data_collator, **common
            )
    elif name == "closed_book_qa":
        length = data_args.max_seq_length
        prompt = [-100] * (length - ANSWER_TOKENS)
        rows = [
            {"input_ids": ids.tolist(), "labels": prompt + ids[-ANSWER_TOKENS:].tolist()}
            for ids in random_rows(vocab, rows=batch * micro_steps, length=length, seed=seed)
        ]
        collator = training_collator(model, 0, padding_free=data_args.padding_free, do_train=True)
        trainer = QATrainer(
            train_dataset=rows,
            data_collator=collator,
            prompts=TemplatePrompts(None),  # evaluation's; no evaluation here
            max_prompt_length=length,
            generation_config=GenerationConfig(),
            **common,
        )
    else:
        length = data_args.max_seq_length
        rows = [
            {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": int(ids[0]) % 2}
            for ids in random_rows(vocab, rows=batch * micro_steps, length=length, seed=seed)
        ]
        trainer = RecipeTrainer(train_dataset=rows, data_collator=default_data_collator, **common)
    return trainer, batch * length * training_args.gradient_accumulation_steps


def recipe_row(name: str, options: argparse.Namespace, *flags: str, adapters: str = "", sharded: bool = False) -> dict:
    """Trains recipe `name` for warm-up + `options.steps` steps (module docstring); `adapters` "lora" / "qlora":
    the QA model loaded from a saved folder with adapters; `sharded`: under FSDP2 on a world of one."""
    with tempfile.TemporaryDirectory() as output_dir:
        if adapters:
            parsed = parsed_recipe(name, options, output_dir, *flags)
            folder = os.path.join(output_dir, "base")
            recipe_model(name, parsed[0], parsed[-1]).save_pretrained(folder)
            flags = (*flags, "--model_name_or_path", folder, "--use_lora", "true", "--merge_lora_on_save", "false")
            if adapters == "qlora":
                flags = (*flags, "--load_in_4bit", "true", "--bnb_4bit_compute_dtype", "bfloat16")
        if sharded:
            join_world_of_one_under_fsdp2(options.device)
        parsed = parsed_recipe(name, options, output_dir, *flags)
        model_args, training_args = parsed[0], parsed[-1]
        if adapters:
            fields = {"vocab_size": model_args.tokenizer_vocab_size}  # unused: the folder's config wins
            model = load_model(RECIPES[name].auto_class, model_args, training_args, new_model_fields=fields, lengths={})
            lora_args = next(args for args in parsed if isinstance(args, LoraArguments))
            targets = qa_recipe.LORA_TARGETS.get(model.config.model_type, "all-linear")  # as the recipe's `main`
            model = add_lora_adapters(model, lora_args, training_args, task_type="CAUSAL_LM", default_targets=targets)
        else:
            model = recipe_model(name, model_args, training_args)
        if sharded:
            shard_on_cpu_processes()
        parameters = sum(p.numel() for p in model.parameters())
        clock = StepClock()
        trainer, step_tokens = recipe_trainer(name, parsed, model, clock)
        if sharded and not trainer.is_fsdp_enabled:
            raise RuntimeError("the Trainer did not take its FSDP path: the row would measure an unsharded run")
        result = trainer.train()
        timed = clock.ends[options.warmup - 1 :]
        tokens_per_s = step_tokens * (len(timed) - 1) / (timed[-1] - timed[0])
        row = {"tokens_per_s": tokens_per_s, "parameters": parameters, "loss": result.training_loss}
        row["notes"] = f"{parameters:,} parameters, {step_tokens:,} tokens a step; loss {result.training_loss:.3f}"
        if sharded:
            del trainer, model  # they hold the process group: its gloo threads would outlive the interpreter
            leave_process_group()
    return row


def join_world_of_one_under_fsdp2(device: str) -> None:
    """This process as rank 0 of a world of one with the FSDP2 settings of `recipes/accelerate_configs/fsdp.yaml`
    (`fsdp_cpu.yaml` on CPU), as `accelerate launch` passes them to its processes."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(get_free_port()),
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        LOCAL_WORLD_SIZE="1",
        ACCELERATE_USE_FSDP="true",
        FSDP_VERSION="2",
        FSDP_AUTO_WRAP_POLICY="TRANSFORMER_BASED_WRAP",
        FSDP_RESHARD_AFTER_FORWARD="true",
        FSDP_STATE_DICT_TYPE="SHARDED_STATE_DICT",
        ACCELERATE_MIXED_PRECISION="bf16" if device == "cuda" else "no",
    )


def loss_row(method: str, options: argparse.Namespace) -> dict:
    """One output layer + loss, forward and backward, `options.steps` times after a warm-up (module docstring)."""
    vocab, tokens, width = LOSS_SHAPES["tiny" if options.tiny else "real"]
    device = torch.device(options.device)
    dtype = torch.bfloat16 if options.device == "cuda" else torch.float32
    generator = torch.Generator().manual_seed(options.seed)
    hidden = torch.randn(tokens, width, generator=generator).to(device, dtype).requires_grad_()
    weight = (torch.randn(vocab, width, generator=generator) * 0.02).to(device, dtype).requires_grad_()
    targets = torch.randint(vocab, (tokens,), generator=generator).to(device)
    chunk = default_chunk_size(vocab_size=vocab, hidden_size=width)
    if method == "liger":
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        liger = LigerFusedLinearCrossEntropyLoss()
    losses = {
        "full softmax": lambda: F.cross_entropy(F.linear(hidden, weight).float(), targets),
        "fused exact": lambda: linear_cross_entropy(hidden, weight, None, targets, chunk_size=chunk)[0],
        "liger": lambda: liger(weight, hidden, targets),
    }
    ends = []
    for _ in range(options.warmup + options.steps):
        loss = losses[method]()
        loss.backward()
        hidden.grad = weight.grad = None
        if options.device == "cuda":
            torch.cuda.synchronize()
        ends.append(time.perf_counter())
    timed = ends[options.warmup - 1 :]
    notes = f"{vocab:,} words, {tokens:,} x {width:,}" + (f", block {chunk}" if method == "fused exact" else "")
    return {"tokens_per_s": tokens * (len(timed) - 1) / (timed[-1] - timed[0]), "loss": loss.item(), "notes": notes}


def skip_reason(part: str, name: str, device: str) -> str | None:
    """Why a row cannot run here (None: it can)."""
    if name == "QLoRA" and (device != "cuda" or importlib.util.find_spec("bitsandbytes") is None):
        return QLORA_UNAVAILABLE
    if name == "liger":
        if importlib.util.find_spec("liger_kernel") is None:
            return "skipped: liger-kernel not installed"
        if device != "cuda":
            return "skipped: liger-kernel needs CUDA (Triton)"
    return None


def rows(options: argparse.Namespace) -> list[tuple[str, str, Callable[[], dict]]]:
    """Every row of the table as (part, name, measure)."""
    table = [("recipes", name, lambda name=name: recipe_row(name, options)) for name in RECIPES]
    table += [
        ("qa adapters", "LoRA", lambda: recipe_row("closed_book_qa", options, adapters="lora")),
        ("qa adapters", "QLoRA", lambda: recipe_row("closed_book_qa", options, adapters="qlora")),
    ]
    table += [("loss", method, lambda m=method: loss_row(m, options)) for method in ("full softmax", "fused exact")]
    table.append(("loss", "liger", lambda: loss_row("liger", options)))
    table.append(("fsdp2", "closed_book_qa, 1 process", lambda: recipe_row("closed_book_qa", options, sharded=True)))
    return table


def measure_in_child(measure: Callable[[], dict], device: str, threads: int, seed: int, connection) -> None:
    """Runs `measure` in this (forked) process and sends its row, with the peak memory, or the error. What the row
    prints (`Trainer`'s last log line) goes to stderr: stdout is the table's."""
    try:
        torch.set_num_threads(threads)
        set_seed(seed)  # the same initial weights and batches in every row of a recipe
        with contextlib.redirect_stdout(sys.stderr):
            row = measure()
        if device == "cuda":
            row["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
            row["device_name"] = torch.cuda.get_device_name()
        else:
            row["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        connection.send({"status": "ok", **row})
    except Exception:
        connection.send({"status": "failed", "reason": traceback.format_exc(limit=-3)})


def measure_row(measure: Callable[[], dict], options: argparse.Namespace) -> dict:
    """`measure`'s row from a forked process of its own (module docstring); the parent never touches CUDA."""
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(
        target=measure_in_child, args=(measure, options.device, options.threads, options.seed, sending)
    )
    child.start()
    sending.close()
    try:
        row = receiving.recv()
    except EOFError:
        row = {"status": "failed", "reason": "the process died without a result"}
    child.join()
    return row


def mfu(row: dict) -> float | None:
    """Model FLOPs utilisation of a recipe row (module docstring), None off the known GPUs."""
    peak = next((flops for gpu, flops in PEAK_BF16_FLOPS if gpu in row.get("device_name", "")), None)
    if peak is None or "parameters" not in row:
        return None
    return 6 * row["parameters"] * row["tokens_per_s"] / peak


def note_loss_differences(results: list[dict]) -> None:
    """Adds to each measured loss row's notes its loss minus the full softmax's (the rows share their inputs: one
    seed), computed here so that no row's peak memory holds another method's."""
    losses = {row["name"]: row["loss"] for row in results if row["part"] == "loss" and row["status"] == "ok"}
    for row in results:
        if (
            row["part"] == "loss"
            and row["status"] == "ok"
            and row["name"] != "full softmax"
            and "full softmax" in losses
        ):
            row["notes"] += f"; loss - full softmax's: {row['loss'] - losses['full softmax']:+.1e}"


def markdown(results: list[dict]) -> str:
    lines = ["| part | row | tokens/s | peak memory (MB) | MFU | notes |", "|---|---|---|---|---|---|"]
    for row in results:
        if row["status"] != "ok":
            lines.append(f"| {row['part']} | {row['name']} | - | - | - | {row['reason'].strip().splitlines()[-1]} |")
            continue
        utilisation = "n/a" if row["mfu"] is None else f"{row['mfu']:.1%}"
        lines.append(
            f"| {row['part']} | {row['name']} | {row['tokens_per_s']:,.0f} | {row['peak_mb']:,.0f} | {utilisation} | "
            f"{row['notes']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (the tiny YAMLs): a smoke run, not a figure")
    parser.add_argument("--steps", type=int, default=None, help="timed steps a row (default 30; --tiny: 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    add_run_flags(parser)
    options = parser.parse_args()
    scale = "tiny" if options.tiny else "real"
    options.steps = options.steps or DEFAULT_STEPS[scale]
    options.warmup = WARMUP_STEPS[scale]
    start = time.perf_counter()
    print(f"# One GPU check: every recipe, {scale} shapes\n\n{machine_line()}\n\n`{' '.join(sys.argv)}`\n", flush=True)
    results = []
    for part, name, measure in rows(options):
        reason = skip_reason(part, name, options.device)
        row = {"status": "skipped", "reason": reason} if reason else measure_row(measure, options)
        row.update(part=part, name=name)
        if row["status"] == "ok":
            row["mfu"] = mfu(row)
        results.append(row)
        print(f"{part} / {name}: {row['status']} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    note_loss_differences(results)
    wall = time.perf_counter() - start
    print(markdown(results) + f"\n\nwall time {wall:.0f} s")
    if options.json:
        summary = {"machine": machine_line(), "device": options.device, "scale": scale, "steps": options.steps}
        options.json.write_text(json.dumps({**summary, "wall_s": wall, "rows": results}, indent=1) + "\n")
    failed = [row["name"] for row in results if row["status"] == "failed"]
    if failed or not all(math.isfinite(row["tokens_per_s"]) for row in results if row["status"] == "ok"):
        sys.exit(f"failed rows: {failed}")


if __name__ == "__main__":
    main()
