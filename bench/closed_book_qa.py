"""Closed-book QA: four claims, chosen by `--parts`.

    python bench/closed_book_qa.py --parts generation [--num_questions 128] [--batch_sizes 1 8 32]
    python bench/closed_book_qa.py --parts head [--steps 10] [--rounds 2]
    python bench/closed_book_qa.py --parts trl --steps 3 --rounds 2 [--arch gpt2 qwen2]   # needs .[bench]
    python bench/closed_book_qa.py --parts trl --tiny --steps 2 --rounds 1             # smoke run
    python bench/closed_book_qa.py --parts data                       # data path at 2M questions
    python bench/closed_book_qa.py --parts data --questions 20000     # smoke run

generation. Claim: the batched generation evaluator answers questions >= 5x faster at batch 32 than one at a
    time. Both sides run the evaluator's own `generate_answers` (left-padded prompts, greedy, stop at EOS or
    newline) with the same randomly initialised GPT-2 built from a config (6 layers, 256 hidden by default) and
    a BPE tokenizer trained on the questions. The questions are NQ-open's (EfficientQA dev) from
    `../shared/data/nq_open` when present, else the project's sample questions (repeated to `--num_questions`).
    An untrained model rarely emits EOS or a newline, so nearly every answer runs the full `--max_new_tokens`
    on both sides. Table: questions per second, batched vs one at a time, and the ratio.
head. Claim: the recipe's answer-only loss (`recipes/closed_book_qa/answer_loss.py`: the output layer on the
    answer positions alone) trains >= 1.25x faster per step than the full head, at the same loss (1e-5).
    GPT-2 124M built from its default config (12 layers, d 768, 50,257 words, dropout off), batches of 32
    NQ-open dev prompts + first answer (`../shared/data/nq_open`, skipped if absent; tokenized by a BPE
    tokenizer trained on them, the recipe's `tokenize_qa_dataset` and collator), `--steps` AdamW steps per
    process. Each side in its own process, alternated over `--rounds`; step time: the minimum after the first
    step; peak memory: peak RSS over the RSS once the model and the optimizer state exist (activations,
    logits, gradients). Losses: the first step's, same weights and batch on both sides.
trl. Claim (issue #33): the recipe's training step (`QATrainer`: answer-only head, padding-free batches where the
    model keeps packed rows apart, as the recipe runs by default) trains >= 2.0x the examples per second of TRL's
    fastest `SFTTrainer` configuration that runs on CPU, at no more peak memory. Same model: GPT-2 124M from its
    default config, and a Qwen2 of similar size (12 layers, d 768, 12 heads over 4 key/value heads, gated MLP 2304,
    tied 50,257-word table: 121M parameters), dropout off, built once with `--seed` and saved. Same BPE tokenizer
    (8,000 words, trained on the questions, saved), same NQ-open dev questions (`../shared/data/nq_open`, skipped if
    absent; the first answer), batch 32, max length 64, fp32 on CPU (TRL's default bf16 and gradient checkpointing
    turned off: ours has neither), AdamW lr 1e-4 at a constant schedule, rows in file order
    (`train_sampling_strategy` sequential: every side's first batch holds the same 32 rows). Each side is a fresh
    process (`bench/_sft_side.py`: the Trainer's own loop, data loading and collation included), sides alternated
    over `--rounds`. Per side: examples/s and answer tokens/s (the best round's totals over its steps after the
    first; a packed row counts the examples in it), that round's median step time, peak RSS over the RSS once
    model, AdamW state and trainer exist, and the first step's loss (both sides: the mean over answer + EOS tokens;
    agreement within 1e-5 checked on the sides that see the same rows). TRL settings tried (TRL 1.16):
    prompt/completion rows with `completion_only_loss`; + `padding_free=True` with `max_length` 64 (refused: TRL
    does not enforce `max_length` without packing) and with `max_length=None` (the header counts the rows over 64
    tokens); + `packing=True` (bfd: padding-free rows of 64 tokens, several examples each, so rows per step differ:
    compare examples/s); `loss_type="chunked_nll"`, a deprecated alias of TRL 1.16's default "nll", is not run (the
    output says so). On CPU TRL's "nll" scores every position in tiles (`add_fused_lm_head`: without Triton the
    valid positions are not compacted); ours scores the answer positions only. `trl` is not a requirement:
    `pip install -e ".[bench]"` (the part says so and is skipped without it). Ours runs a third time with transformers'
    dense block-causal sdpa on the same padding-free batches, instead of the recipe's sdpa per packed row.
data. Claim (issue #21): a 2M-question jsonl goes through the QA recipe to the end of 2 steps of its tiny model
    in <= 120 s and <= 3 GB peak RSS on the first run (empty cache), <= 20 s on a repeat run (>= 10x faster), at
    <= 0.5x the peak RSS of the baseline data path (`--baseline_commit`, default a25df2f: the last commit before
    the Arrow path, rows as Python dicts, tokenised on every run) on the same `--list_rows` questions. The file:
    the NQ-open dev questions (`--data_dir`) repeated to `--questions` lines, else the project's sample
    questions repeated (the header says which). Each run: `recipes/closed_book_qa/configs/tiny.yaml` with
    `--train_file` that file, `--max_steps 2` and a BPE tokenizer trained here on the sample questions and saved
    (`--tokenizer_name`, as the tests share theirs: the data path is measured, not BPE training), in a fresh
    process timed from start to exit with its own peak RSS and CPU seconds (`bench/_data_path.py`).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import torch
from _cli import met
from _data_path import add_data_flags, compare_data_paths, write_repeated_lines
from _machine import machine_line
from _sft_side import adamw_with_state, resident_mb
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, PretrainedConfig, Qwen2Config

from data.closed_book_qa import load_qa_dataset
from data.qa_features import DEFAULT_PROMPT_TEMPLATE, QATrainingCollator, TemplatePrompts, tokenize_qa_dataset
from data.tokenizers import train_tokenizer
from recipes.closed_book_qa.answer_loss import answer_only_loss
from recipes.closed_book_qa.generation_eval import generate_answers
from recipes.kit.generation import GenerationArguments

NQ_OPEN = Path(__file__).resolve().parents[1].parent / "shared/data/nq_open"
SAMPLES = Path(__file__).resolve().parents[1] / "data/samples/closed_book_qa"
NQ_DEV = NQ_OPEN / "NQ-open.efficientqa.dev.1.1.jsonl"
HEAD_SIDES = ("full head", "answer-only")
HEAD_BATCH, TARGET_HEAD_SPEEDUP = 32, 1.25
TRL_BATCH, TARGET_TRL_SPEEDUP = 32, 2.0


def load_questions(num_questions: int) -> tuple[list[str], str]:
    source = NQ_DEV if NQ_DEV.is_file() else SAMPLES / "validation.jsonl"
    questions = list(load_qa_dataset(validation_file=str(source))["validation"]["question"])
    return (questions * (num_questions // len(questions) + 1))[:num_questions], source.name


def questions_per_second(model, tokenizer, questions: list[str], batch_size: int, generation_config) -> float:
    prompts = TemplatePrompts(tokenizer, DEFAULT_PROMPT_TEMPLATE)
    texts = prompts.prompt_texts(questions)
    kwargs = {"max_prompt_length": 64, "generation_config": generation_config}
    generate_answers(model, prompts, texts[:batch_size], **kwargs)  # warm-up
    start = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        generate_answers(model, prompts, texts[i : i + batch_size], **kwargs)
    return len(questions) / (time.perf_counter() - start)


def part_generation(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    questions, source = load_questions(args.num_questions)
    texts = [DEFAULT_PROMPT_TEMPLATE.format(question=q) for q in questions]
    tokenizer = train_tokenizer(texts, kind="bpe", vocab_size=2000)
    tokenizer.pad_token = tokenizer.eos_token
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=args.n_layer,
        n_embd=args.n_embd,
        n_head=8,
        n_positions=128,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config).eval()
    generation_config = GenerationArguments(max_new_tokens=args.max_new_tokens).generation_config(
        tokenizer, eos_token_id=TemplatePrompts(tokenizer).stop_ids()
    )

    one_at_a_time = questions_per_second(model, tokenizer, questions, 1, generation_config)
    print(
        f"\n{len(questions)} questions from {source}; GPT-2 {args.n_layer} layers x {args.n_embd}, "
        f"{args.max_new_tokens} new tokens, greedy, {torch.get_num_threads()} threads\n"
    )
    print("| batch size | batched (questions/s) | one at a time (questions/s) | speed-up |\n|---|---|---|---|")
    for batch_size in args.batch_sizes:
        batched = questions_per_second(model, tokenizer, questions, batch_size, generation_config)
        print(f"| {batch_size} | {batched:.1f} | {one_at_a_time:.1f} | {batched / one_at_a_time:.1f}x |")


# --------------------------------------------------------------------------------------------------
# head: the answer-only loss against the full head, GPT-2 124M
# --------------------------------------------------------------------------------------------------


def head_batches(path: Path, steps: int) -> list[dict[str, list]]:
    """`steps` collated batches of 32 NQ-open dev examples (prompt + first answer + EOS, labels on the answer)."""
    raw = load_qa_dataset(validation_file=str(path))["validation"].select(range(steps * HEAD_BATCH))
    texts = [DEFAULT_PROMPT_TEMPLATE.format(question=q) + " " + a[0] for q, a in zip(raw["question"], raw["answers"])]
    tokenizer = train_tokenizer(texts, kind="bpe", vocab_size=8000)
    tokenizer.pad_token = tokenizer.eos_token
    examples = tokenize_qa_dataset(raw, TemplatePrompts(tokenizer), max_seq_length=64, all_answers=False)
    collate = QATrainingCollator(tokenizer.pad_token_id)
    rows = [examples[i] for i in range(len(examples))]
    return [
        {name: tensor.tolist() for name, tensor in collate(rows[i : i + HEAD_BATCH]).items()}
        for i in range(0, steps * HEAD_BATCH, HEAD_BATCH)
    ]


def head_steps(side: str, batches: list[dict[str, list]]) -> dict:
    """AdamW steps of GPT-2 124M in this process with the full head or the answer-only loss."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).train()
    optimizer = adamw_with_state(model, lr=1e-4)
    baseline_mb = resident_mb()
    times, losses = [], []
    for rows in batches:
        batch = {name: torch.tensor(value) for name, value in rows.items()}
        start = time.perf_counter()
        loss = answer_only_loss(model, batch) if side == "answer-only" else model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"times": times[1:], "losses": losses, "step_mb": peak_mb - baseline_mb}


def part_head(args: argparse.Namespace) -> None:
    if not (args.data_dir / NQ_DEV.name).is_file():
        print(f"\n## head: skipped, no {NQ_DEV.name} in {args.data_dir}")
        return
    batches = head_batches(args.data_dir / NQ_DEV.name, args.steps)
    mean_length = sum(len(batch["input_ids"][0]) for batch in batches) / len(batches)
    print(
        f"\n## head: answer-only loss vs full head\n\nGPT-2 124M (12 layers, d 768, 50,257 words), {len(batches)} "
        f"AdamW steps of {HEAD_BATCH} NQ-open dev examples ({mean_length:.0f} tokens per row on average), fp32, "
        f"{args.threads} threads; each side in its own process, {args.rounds} "
        "alternated rounds; min step time after the first step; peak RSS over the model and optimizer state.\n",
        flush=True,
    )
    results = {side: {"times": [], "step_mb": 0.0} for side in HEAD_SIDES}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(batches, file)
        file.flush()
        for _ in range(args.rounds):
            for side in HEAD_SIDES:
                command = [sys.executable, __file__, "--head_worker", side, "--head_batches", file.name]
                done = subprocess.run(command + ["--threads", str(args.threads)], capture_output=True, text=True)
                if done.returncode:
                    raise RuntimeError(f"{side} worker failed: {done.stderr[-2000:]}")
                r = json.loads(done.stdout.strip().splitlines()[-1])
                results[side]["times"] += r["times"]
                results[side].update(step_mb=max(results[side]["step_mb"], r["step_mb"]), losses=r["losses"])
    full, answer = results["full head"], results["answer-only"]
    speed, memory = min(full["times"]) / min(answer["times"]), full["step_mb"] / max(answer["step_mb"], 1.0)
    difference = answer["losses"][0] - full["losses"][0]
    drift = max(abs(a - b) for a, b in zip(answer["losses"], full["losses"]))
    print("| head | min step s | peak step MB | first-step loss |\n|---|---|---|---|")
    for side, r in results.items():
        print(f"| {side} | {min(r['times']):.3f} | {r['step_mb']:,.0f} | {r['losses'][0]:.6f} |")
    ok = speed >= TARGET_HEAD_SPEEDUP and abs(difference) <= 1e-5
    print(
        f"\nanswer-only vs full head: {speed:.2f}x faster per step, {memory:.2f}x less peak step memory; first-step "
        f"loss difference {difference:+.1e} (largest over the {len(batches)} steps {drift:.1e}); target >= "
        f"{TARGET_HEAD_SPEEDUP}x faster at the same loss (1e-5): {'yes' if ok else 'NO'}"
    )


# --------------------------------------------------------------------------------------------------
# trl: the recipe's training step against TRL's SFTTrainer
# --------------------------------------------------------------------------------------------------


def trl_sides() -> list[tuple[str, dict]]:
    """(label, job fields) of every side of the trl part: ours three times (the recipe's default; padding-free with
    transformers' dense block-causal sdpa instead of sdpa per packed row; padded), then the TRL configurations."""
    return [
        ("ours: answer-only head, padding-free (recipe default)", {"side": "ours", "padding_free": None}),
        ("ours: padding-free, dense block-causal sdpa", {"side": "ours", "padding_free": None, "attention": "sdpa"}),
        ("ours: answer-only head, padded", {"side": "ours", "padding_free": False}),
        ("TRL: completion_only_loss, max_length 64", {"side": "trl", "sft": {"max_length": 64}}),
        ("TRL: + padding_free, max_length 64", {"side": "trl", "sft": {"max_length": 64, "padding_free": True}}),
        ("TRL: + padding_free, max_length None", {"side": "trl", "sft": {"max_length": None, "padding_free": True}}),
        ("TRL: + packing (bfd), max_length 64", {"side": "trl", "sft": {"max_length": 64, "packing": True}}),
        ("TRL: + loss_type chunked_nll", {"side": "trl", "sft": {"max_length": 64, "loss_type": "chunked_nll"}}),
    ]


def trl_model_config(arch: str, tokenizer, tiny: bool) -> PretrainedConfig:
    """GPT-2 124M (its default config) or a Qwen2 of similar size (12 layers, d 768, 12 heads over 4 key/value
    heads, gated MLP 2304: 121M parameters), 50,257 words, dropout off; `tiny`: 2 layers, d 64, the tokenizer's
    words."""
    special = {"bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id}
    special["pad_token_id"] = tokenizer.pad_token_id
    vocab = {"vocab_size": len(tokenizer) if tiny else 50257}
    if arch == "gpt2":
        size = {"n_layer": 2, "n_embd": 64, "n_head": 4} if tiny else {}
        return GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **size, **vocab, **special)
    size = {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 2304}
    if tiny:
        size = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 192}
    return Qwen2Config(
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        **size,
        **vocab,
        **special,
    )


def chunked_nll_is_alias() -> bool:
    """Whether this TRL's `SFTConfig` turns `loss_type="chunked_nll"` into another loss type (TRL 1.16: "nll")."""
    from trl import SFTConfig

    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as folder:
        warnings.simplefilter("ignore", FutureWarning)
        return SFTConfig(output_dir=folder, loss_type="chunked_nll", use_cpu=True).loss_type != "chunked_nll"


def run_trl_side(job: dict) -> dict:
    """Runs `bench/_sft_side.py` on `job` in a fresh process; its result, or `{"refused": message}` when the
    trainer refused the configuration (a ValueError before training)."""
    command = [sys.executable, str(Path(__file__).with_name("_sft_side.py")), json.dumps(job)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{job['side']} worker failed: {done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def part_trl(args: argparse.Namespace) -> None:
    if args.steps < 2:
        raise SystemExit("--parts trl needs --steps 2 or more: the first step is not timed")
    if not (args.data_dir / NQ_DEV.name).is_file():
        print(f"\n## trl: skipped, no {NQ_DEV.name} in {args.data_dir}")
        return
    try:
        import trl
    except ImportError:
        print('\n## trl: skipped, trl is not installed: pip install -e ".[bench]"')
        return
    raw = load_qa_dataset(validation_file=str(args.data_dir / NQ_DEV.name))["validation"]
    raw = raw.select(range(min(len(raw), args.steps * TRL_BATCH * 4)))  # a packed row holds ~3.5
    texts = [DEFAULT_PROMPT_TEMPLATE.format(question=q) + " " + a[0] for q, a in zip(raw["question"], raw["answers"])]
    tokenizer = train_tokenizer(texts, kind="bpe", vocab_size=8000)
    tokenizer.pad_token = tokenizer.eos_token
    untruncated = tokenize_qa_dataset(raw, TemplatePrompts(tokenizer), max_seq_length=10**6, all_answers=False)
    lengths = [len(row) for row in untruncated["input_ids"]]
    with tempfile.TemporaryDirectory(prefix="bench_trl_") as folder:
        tokenizer.save_pretrained(f"{folder}/tokenizer")
        raw.to_json(f"{folder}/rows.jsonl")
        print(
            f"\n## trl: the recipe's training step vs TRL {trl.__version__} SFTTrainer\n\n{machine_line()}; 1-minute "
            f"load average {os.getloadavg()[0]:.1f}\n\n`{' '.join(sys.argv)}`\n\n{len(raw)} NQ-open dev "
            f"questions (first answer; {sum(lengths) / len(lengths):.1f} tokens per row on average, "
            f"{sum(n > args.max_length for n in lengths)} rows over {args.max_length}), batch {TRL_BATCH}, max "
            f"length {args.max_length}, fp32 (TRL: bf16 and gradient checkpointing off), AdamW lr 1e-4 (state "
            f"allocated before the baseline), {args.steps} steps per process, {args.threads} threads; each side in "
            f"its own process, {args.rounds} alternated rounds. "
            "examples/s and answer tokens/s: the best round's total over its steps after the first; step s: that "
            "round's median; peak MB: peak RSS over the RSS once model, optimizer and trainer exist; first loss: "
            "the first step's mean over answer tokens (answer + EOS) on the same first 32 rows.",
            flush=True,
        )
        sides = trl_sides()
        if chunked_nll_is_alias():
            print(
                f"\nnot run: {sides.pop()[0]}: TRL {trl.__version__} maps it to loss_type 'nll' (a deprecated alias: "
                "its default loss no longer builds the full logits): the completion_only_loss row"
            )
        for arch in args.arch:
            torch.manual_seed(args.seed)
            model = AutoModelForCausalLM.from_config(trl_model_config(arch, tokenizer, args.tiny))
            model.save_pretrained(f"{folder}/{arch}")
            params = sum(p.numel() for p in model.parameters())
            del model
            job = {"model": f"{folder}/{arch}", "tokenizer": f"{folder}/tokenizer", "rows": f"{folder}/rows.jsonl"}
            job |= {"steps": args.steps, "batch_size": TRL_BATCH, "max_length": args.max_length, "lr": 1e-4}
            job["threads"] = args.threads
            results = compare_trl_sides(job, sides, args.rounds)
            print_trl_table(f"{arch}, {params:,} parameters", results)
            print(f"\n1-minute load average at the end of {arch}: {os.getloadavg()[0]:.1f}")


def compare_trl_sides(job: dict, sides: list[tuple[str, dict]], rounds: int) -> dict[str, dict]:
    """`{label: best round's figures, or {"refused": message}}` over `rounds` alternated rounds of `sides`."""
    results: dict[str, dict] = {}
    for _ in range(rounds):
        for label, fields in sides:
            if "refused" in results.get(label, {}):
                continue
            r = run_trl_side(job | fields)
            if "refused" in r:
                results[label] = r
                continue
            rate = sum(r["examples"]) / sum(r["times"])
            if rate > results.get(label, {}).get("examples_s", 0.0):
                results[label] = {
                    "examples_s": rate,
                    "answer_tokens_s": sum(r["answer_tokens"]) / sum(r["times"]),
                    "step_s": statistics.median(r["times"]),
                    "packed": "packing" in fields.get("sft", {}),
                } | {key: r[key] for key in ("first_loss", "peak_mb")}
            results[label]["peak_mb"] = max(results[label]["peak_mb"], r["peak_mb"])
    return results


def print_trl_table(title: str, results: dict[str, dict]) -> None:
    """The table of one architecture, the configurations TRL refused, the loss agreement and the target line."""
    ran = {label: r for label, r in results.items() if "refused" not in r}
    ours = ran[trl_sides()[0][0]]
    trl_ran = {label: r for label, r in ran.items() if label.startswith("TRL")}
    fastest = trl_ran[max(trl_ran, key=lambda label: trl_ran[label]["examples_s"])]
    print(
        f"\n### {title}\n\n| side | config | examples/s | answer tokens/s | step s | peak MB | first loss | "
        "examples/s vs TRL's fastest |\n|---|---|---|---|---|---|---|---|"
    )
    for label, r in ran.items():
        loss = f"{r['first_loss']:.6f}" + (" (packed: other rows)" if r["packed"] else "")
        print(
            f"| {label.replace(': ', ' | ', 1)} | {r['examples_s']:.2f} | {r['answer_tokens_s']:.1f} | "
            f"{r['step_s']:.3f} | {r['peak_mb']:,.0f} | {loss} | {r['examples_s'] / fastest['examples_s']:.2f}x |"
        )
    for label, r in results.items():
        if "refused" in r:
            print(f"\nrefused: {label}: {r['refused']}")
    dense = ran.get(trl_sides()[1][0])
    if dense:
        print(f"\nsdpa per packed row / dense block-causal sdpa: {ours['examples_s'] / dense['examples_s']:.2f}x")
    largest = max(abs(r["first_loss"] - ours["first_loss"]) for r in ran.values() if not r["packed"])
    print(
        f"\nfirst-step loss on the same rows, largest difference from ours: {largest:.1e} (within 1e-5: "
        f"{met(largest <= 1e-5)}); TRL's loss is ours: the sum over answer + EOS tokens over their number"
    )
    speed, memory = ours["examples_s"] / fastest["examples_s"], ours["peak_mb"] / fastest["peak_mb"]
    ok = speed >= TARGET_TRL_SPEEDUP and memory <= 1.0
    print(
        f"\nours / TRL fastest >= {TARGET_TRL_SPEEDUP}x at no more peak memory: {'met' if ok else 'missed'} "
        f"({speed:.2f}x the examples/s, {memory:.2f}x the peak MB)"
    )


# --------------------------------------------------------------------------------------------------
# data: the Arrow-cached data path at 2M questions against the baseline's
# --------------------------------------------------------------------------------------------------


def part_data(args: argparse.Namespace) -> None:
    nq_dev = args.data_dir / NQ_DEV.name
    source = nq_dev if nq_dev.is_file() else SAMPLES / "train.jsonl"
    origin = f"{source} repeated" + ("" if source == nq_dev else f" (no {nq_dev})")
    with tempfile.TemporaryDirectory(prefix="bench_qa_tokenizer_") as folder:
        samples = load_qa_dataset(train_file=str(SAMPLES / "train.jsonl"))["train"]
        texts = [
            DEFAULT_PROMPT_TEMPLATE.format(question=q) + " " + " ".join(a)
            for q, a in zip(samples["question"], samples["answers"])
        ]
        train_tokenizer(texts, kind="bpe", vocab_size=600).save_pretrained(folder)  # tiny.yaml's tokenizer_vocab_size
        compare_data_paths(
            args,
            task="closed_book_qa",
            rows=args.questions,
            write_file=partial(write_repeated_lines, source, header=False),
            suffix=".jsonl",
            argv=["--tokenizer_name", folder],
            source=origin,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--parts", nargs="+", choices=["generation", "head", "trl", "data"], default=["generation", "head"]
    )
    parser.add_argument("--num_questions", type=int, default=128, help="(generation)")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8, 32], help="(generation)")
    parser.add_argument("--n_layer", type=int, default=6, help="(generation)")
    parser.add_argument("--n_embd", type=int, default=256, help="(generation)")
    parser.add_argument("--max_new_tokens", type=int, default=8, help="(generation)")
    parser.add_argument("--steps", type=int, default=10, help="(head, trl) training steps per process")
    parser.add_argument("--rounds", type=int, default=2, help="(head, trl) alternating processes per side")
    parser.add_argument("--arch", nargs="+", choices=["gpt2", "qwen2"], default=["gpt2", "qwen2"], help="(trl)")
    parser.add_argument("--max_length", type=int, default=64, help="(trl) tokens per example")
    parser.add_argument("--tiny", action="store_true", help="(trl) 2 layers, d 64: a smoke run")
    parser.add_argument("--data_dir", type=Path, default=NQ_OPEN, help="(head, data) the NQ-open folder")
    add_data_flags(parser, rows_flag="--questions", rows=2_000_000, what="questions")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--head_worker", choices=HEAD_SIDES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--head_batches", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.head_worker:  # one side of the head part, in the fresh process started by part_head
        print(json.dumps(head_steps(args.head_worker, json.loads(args.head_batches.read_text()))))
        return
    if "generation" in args.parts:
        part_generation(args)
    if "head" in args.parts:
        part_head(args)
    if "trl" in args.parts:
        part_trl(args)
    if "data" in args.parts:
        part_data(args)


if __name__ == "__main__":
    main()
