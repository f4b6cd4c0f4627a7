"""Transformer-XL claims (Dai et al. 2019, "Transformer-XL"), each measured against its baseline in one run.

Five parts, (a)-(e), chosen by flag:

    python bench/transfo_xl.py --eval_speed                      # (a) memory vs sliding window, C = 128..1024
    python bench/transfo_xl.py --wikitext2                       # (b) WikiText-2 ppl, memory vs mem_len=0 (~6-10 min)
    python bench/transfo_xl.py --train_speed --install_reference # (c) training tok/s vs transformers 4.x
    python bench/transfo_xl.py --adaptive_step                   # (d) adaptive vs full softmax, 267,735 words
    python bench/transfo_xl.py --grad_checkpointing              # (e) training memory with / without checkpointing
    python bench/transfo_xl.py --eval_speed --vocab_size 267735 --cutoffs 20000 40000 200000  # (a), adaptive
    python bench/transfo_xl.py --all --install_reference         # everything (see --help for sizes)

(a) Evaluation speed (paper Table 9). One random-weight model (fp32, eval mode, inference_mode) is run
    two ways over a random token stream. Transformer-XL: segments of `--eval_tgt_len` tokens with
    mem_len = C and same_length, so every query of every layer attends to exactly C keys (itself
    included), memory full (steady state). Vanilla (Al-Rfou et al. evaluation): for each predicted token,
    the same model with no memory runs the window of the C previous tokens and only the last position goes
    through the output layer. Per-layer attention length is C on both sides; only memory reuse differs.
    Rounds alternate the two sides; the minimum per-token time of each is reported. Plot: speed-up against
    C, `bench/results/transfo_xl_eval_speed.png` (`..._adaptive.png` with `--cutoffs`).
(b) WikiText-2 validation perplexity of two models trained by `recipes/transformer_xl/train.py`'s `main()`
    with identical settings and steps, one with `--mem_len`, one with mem_len=0; both evaluated by the
    paper's protocol (the whole validation stream in 10 streams, memory carried). The memory model is
    evaluated again with a longer memory (`--long_eval_mem_len`, same_length, distances clamped to what it
    saw in training). Data: `--data_dir`, by default `../shared/data/wikitext2/{train,valid}.txt` next to the
    repository. Plot: the three perplexities as bars, `bench/results/transfo_xl_wikitext2_memory.png`.
(c) Training tokens/s (forward + backward + AdamW step, memory carried, dropout on) of our model against
    `TransfoXLLMHeadModel` of transformers 4.35.2 at the same config (non-adaptive softmax, tied weights).
    The reference runs in a second interpreter (`--reference_python`, a venv with transformers 4.35.2 on
    the same torch; by default `~/.cache/finetune-recipes/venv-transformers-4.35.2/bin/python`, which
    `--install_reference` builds); both processes wait on a pipe while the other runs, so rounds alternate.
(d) One training step (forward + backward, no optimizer) of one small backbone with the output layer at
    WikiText-103's 267,735 words: full softmax against the adaptive softmax with the paper's cutoffs
    (20k / 40k / 200k; div_val 1 as the base model, div_val 4 as the large one), same batch, same seed.
    Tokens follow Zipf's law (p of rank r ∝ 1/r), as word frequencies do; the adaptive softmax relies
    on that (uniform ids would put 60% of the targets in the 160k-word third cluster). Each side runs in
    its own process, in alternating rounds (`bench/_train_step.py`): step time is the minimum over steps
    after a warm-up step, peak memory is the process's peak RSS (`ru_maxrss`) minus its RSS once the model
    is built.
(e) Gradient checkpointing: one training step (forward + backward, no optimizer, dropout on) of one model
    (the model flags, full softmax over `--vocab_size` Zipf-distributed tokens, batch `--ckpt_batch_size` x
    `--ckpt_tgt_len`), without and with `activation_checkpointing_enable()` (each layer keeps only its
    inputs and recomputes the rest in backward). Same processes, rounds and measures as (d): min step time,
    peak RSS over the model's resident size; on a GPU machine that is host memory, not GPU memory.

Targets: (a) ratio grows with C and is >= 50x at C = 512, with a full or an adaptive softmax; (b) memory
model has the lower perplexity; (c) ours >= 1.0x the reference; (d) adaptive >= 5x faster and >= 5x less
peak memory than full; (e) checkpointing >= 2x less peak step memory, at most 1.5x the step time (one more
forward of the layers: ~1.33x in theory). Timings on a shared CPU are noisy: read ratios, not seconds. The
plots need matplotlib (`pip install -e ".[plot]"`); without it the tables are printed and one line says the
plot was skipped.
"""

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _cli import add_run_flags, begin, met
from _plot import save_plot
from _train_step import measure_steps

from custom_models.reference_env import default_reference_python, ensure_reference
from custom_models.transfo_xl import TransformerXLConfig, TransformerXLForCausalLM

WIKITEXT2_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/wikitext2"
REFERENCE_VERSION = "4.35.2"
TARGET_EVAL_SPEEDUP = {512: 50.0}
WT103_VOCAB = 267735
PAPER_CUTOFFS = [20000, 40000, 200000]
TARGET_ADAPTIVE_GAIN = 5.0
TARGET_CHECKPOINTING_MEMORY_GAIN, TARGET_CHECKPOINTING_TIME_COST = 2.0, 1.5


def build_model(
    args: argparse.Namespace, *, vocab_size: int, mem_len: int, same_length: bool, dropout: float, **overrides
):
    torch.manual_seed(args.seed)
    config = TransformerXLConfig(
        vocab_size=vocab_size,
        d_model=args.d_model,
        d_embed=args.d_model,
        n_head=args.n_head,
        d_head=args.d_model // args.n_head,
        d_inner=4 * args.d_model,
        n_layer=args.n_layer,
        mem_len=mem_len,
        clamp_len=0,
        same_length=same_length,
        dropout=dropout,
        dropatt=0.0,
        **overrides,
    )
    return TransformerXLForCausalLM(config)


# ------------------------------------------------------------------------------------------------------
# (a) evaluation speed: memory vs sliding window
# ------------------------------------------------------------------------------------------------------


def bench_eval_speed(model: TransformerXLForCausalLM, context: int, args: argparse.Namespace) -> dict:
    """Per-token seconds of both evaluations at context `context`; minimum over alternating rounds."""
    model.config.mem_len, model.config.same_length = context, True  # read at forward time
    b, tgt_len = args.eval_batch_size, args.eval_tgt_len
    warm_segments = math.ceil(context / tgt_len) + 1  # fills the memory to mem_len = context
    txl_segments = max(1, math.ceil(args.eval_txl_tokens / tgt_len))  # per round
    total = (warm_segments + txl_segments * args.eval_rounds) * tgt_len + 1
    g = torch.Generator().manual_seed(args.seed)
    stream = torch.randint(
        model.config.vocab_size, (b, max(total, context + args.eval_windows * args.eval_rounds + 1)), generator=g
    )
    state = {"mems": None, "txl_pos": 0, "win_pos": context}

    def txl_segment() -> None:
        pos = state["txl_pos"]
        out = model(
            input_ids=stream[:, pos : pos + tgt_len],
            target_ids=stream[:, pos + 1 : pos + tgt_len + 1],
            mems=state["mems"],
        )
        state["mems"], state["txl_pos"] = out.mems, pos + tgt_len

    def vanilla_prediction() -> None:
        end = state["win_pos"]  # predict stream[:, end] from the C tokens before it, no memory
        hidden = model.transformer(input_ids=stream[:, end - context : end]).last_hidden_state  # [b, C, d_model]
        model.crit.nll(hidden[:, -1], stream[:, end])  # only the last position is needed
        state["win_pos"] = end + 1

    txl_times, vanilla_times = [], []
    with torch.inference_mode():
        for _ in range(warm_segments):
            txl_segment()
        vanilla_prediction()  # warm-up
        for _ in range(args.eval_rounds):  # alternate the two sides
            start = time.perf_counter()
            for _ in range(txl_segments):
                txl_segment()
            txl_times.append((time.perf_counter() - start) / (txl_segments * tgt_len * b))
            start = time.perf_counter()
            for _ in range(args.eval_windows):
                vanilla_prediction()
            vanilla_times.append((time.perf_counter() - start) / (args.eval_windows * b))
    if state["mems"][0].shape[1] != context:
        raise RuntimeError(f"memory holds {state['mems'][0].shape[1]} positions, expected {context}")
    txl, vanilla = min(txl_times), min(vanilla_times)
    return {"context": context, "txl": txl, "vanilla": vanilla, "ratio": vanilla / txl}


def part_eval_speed(args: argparse.Namespace) -> None:
    adaptive = {"cutoffs": args.cutoffs, "adaptive": True, "div_val": args.div_val} if args.cutoffs else {}
    model = build_model(
        args, vocab_size=args.vocab_size, mem_len=max(args.contexts), same_length=True, dropout=0.0, **adaptive
    )
    model.eval()
    softmax = f"adaptive softmax (cutoffs {args.cutoffs}, div_val {args.div_val})" if adaptive else "full softmax"
    print(
        f"\n## (a) Evaluation speed: Transformer-XL memory vs vanilla sliding window (paper Table 9)\n\n"
        f"{args.n_layer} layers, d_model {args.d_model}, {args.n_head} heads, d_inner {4 * args.d_model}, vocab "
        f"{args.vocab_size:,} ({softmax}), batch {args.eval_batch_size}, fp32, eval mode, inference_mode. "
        f"Transformer-XL: segments of {args.eval_tgt_len}, mem_len = C, same_length (each query attends to C "
        f"keys), memory full; "
        f"{args.eval_txl_tokens} tokens per round. Vanilla: one forward over the C previous tokens per prediction, "
        f"output layer on the last position; {args.eval_windows} predictions per round. Min over {args.eval_rounds} "
        f"alternating rounds.\n"
    )
    print("| C (attention length) | Transformer-XL tok/s | vanilla tok/s | speed-up | target | met |")
    print("|---|---|---|---|---|---|")
    rows = []
    for context in sorted(args.contexts):
        r = bench_eval_speed(model, context, args)
        rows.append(r)
        target = TARGET_EVAL_SPEEDUP.get(context)
        print(
            f"| {context} | {1 / r['txl']:,.0f} | {1 / r['vanilla']:,.1f} | {r['ratio']:,.1f}x | "
            f"{f'>= {target:.0f}x' if target else '-'} | {met(r['ratio'] >= target) if target else '-'} |",
            flush=True,
        )
    grows = all(a["ratio"] < b["ratio"] for a, b in zip(rows, rows[1:]))
    print(f"\nSpeed-up grows with context: {met(grows)}. Paper (GPU, large model): 363x at 800 ... 1,874x at 3,800.")
    name = "transfo_xl_eval_speed_adaptive.png" if adaptive else "transfo_xl_eval_speed.png"
    print(
        save_plot(
            name,
            lines={softmax: ([r["context"] for r in rows], [r["ratio"] for r in rows])},
            title=f"Transformer-XL evaluation speed-up, {args.n_layer} layers, d_model {args.d_model}",
            xlabel="attention length C (tokens)",
            ylabel="speed-up over the sliding window (x)",
            xscale="log",
            yscale="log",
        )
    )


# ------------------------------------------------------------------------------------------------------
# (b) WikiText-2 perplexity through the recipe: memory vs mem_len=0
# ------------------------------------------------------------------------------------------------------


def recipe_arguments(args: argparse.Namespace, *, mem_len: int, output_dir: str):
    from transformers import TrainingArguments

    from recipes.transformer_xl.train import TransformerXLDataArguments, TransformerXLModelArguments

    overrides = (
        f"n_layer={args.n_layer},d_model={args.d_model},d_embed={args.d_model},n_head={args.n_head},"
        f"d_head={args.d_model // args.n_head},d_inner={4 * args.d_model},dropout={args.dropout},dropatt=0.0,"
        f"clamp_len=0,same_length=false"
    )
    model_args = TransformerXLModelArguments(
        config_overrides=overrides, tokenizer_vocab_size=args.lm_vocab_size, mem_len=mem_len
    )
    data_args = TransformerXLDataArguments(
        train_file=str(args.data_dir / "train.txt"),
        validation_file=str(args.data_dir / "valid.txt"),
        tgt_len=args.tgt_len,
        eval_tgt_len=args.tgt_len,
        eval_num_streams=10,  # the paper's 10 evaluation streams (the authors' eval.py)
    )
    training_args = TrainingArguments(
        output_dir=output_dir,
        use_cpu=True,
        do_train=True,
        do_eval=True,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=10,  # all 10 streams at once
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, args.max_steps // 20),
        max_grad_norm=0.25,
        optim="adamw_torch",
        logging_steps=max(1, args.max_steps // 5),
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=args.seed,
    )
    return model_args, data_args, training_args


def evaluate_saved(output_dir: str, args: argparse.Namespace, *, mem_len: int, clamp_len: int) -> dict:
    """The paper's protocol again on the saved model, with a longer memory (recipe's MemoryTrainer.evaluate)."""
    from transformers import AutoTokenizer, TrainingArguments

    from data.lm_corpus import load_text_corpus
    from data.streams import StreamSegments, encode_stream
    from recipes.transformer_xl.memory_trainer import EvalMemory, MemoryTrainer

    model = TransformerXLForCausalLM.from_pretrained(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    corpus = load_text_corpus(validation_file=str(args.data_dir / "valid.txt"))
    eval_dataset = StreamSegments(
        encode_stream(corpus["validation"]["text"], tokenizer), num_streams=10, tgt_len=args.tgt_len
    )
    training_args = TrainingArguments(output_dir=output_dir, use_cpu=True, report_to="none", disable_tqdm=True)
    trainer = MemoryTrainer(
        model=model,
        args=training_args,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        eval_memory=EvalMemory(mem_len=mem_len, clamp_len=clamp_len, same_length=True),
    )
    return trainer.evaluate()


def part_wikitext2(args: argparse.Namespace) -> None:
    from recipes.kit.generation import GenerationArguments
    from recipes.transformer_xl.train import main as train_main

    missing = [name for name in ("train.txt", "valid.txt") if not (args.data_dir / name).is_file()]
    if missing:
        sys.exit(f"(b) needs WikiText-2 at {args.data_dir} ({', '.join(missing)} missing); pass --data_dir")
    tokens_per_step = args.batch_size * args.tgt_len
    print(
        f"\n## (b) WikiText-2 validation perplexity: memory vs no memory, same recipe and steps\n\n"
        f"recipes/transformer_xl/train.py main(): word-level tokenizer (vocab cap {args.lm_vocab_size:,}; rarer "
        f"words -> <unk>), {args.n_layer} layers, d_model {args.d_model}, {args.n_head} heads, d_inner "
        f"{4 * args.d_model}, dropout {args.dropout}, clamp_len 0, same_length off in training; {args.batch_size} "
        f"streams x tgt_len {args.tgt_len} = {tokens_per_step} tokens/step, {args.max_steps} steps "
        f"({args.max_steps * tokens_per_step:,} tokens), AdamW lr {args.learning_rate} cosine, clip 0.25, "
        f"seed {args.seed}. Eval: the whole validation stream, 10 streams, segments of {args.tgt_len}, memory "
        f"carried.\n",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_txl_") as root:
        for mem_len in (args.mem_len, 0):
            output_dir = os.path.join(root, f"mem{mem_len}")
            model_args, data_args, training_args = recipe_arguments(args, mem_len=mem_len, output_dir=output_dir)
            start = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its logs; keep stdout for tables
                metrics = train_main(model_args, data_args, GenerationArguments(), training_args)
            elapsed = time.perf_counter() - start
            rows.append((f"mem_len {mem_len}", mem_len, mem_len, "off", 0, metrics, f"{elapsed:.0f}"))
            if mem_len:
                clamp_len = args.mem_len + args.tgt_len - 1  # the longest distance seen in training
                start = time.perf_counter()
                with contextlib.redirect_stdout(sys.stderr):
                    metrics = evaluate_saved(output_dir, args, mem_len=args.long_eval_mem_len, clamp_len=clamp_len)
                rows.append(
                    (
                        f"mem_len {mem_len}, longer eval memory",
                        mem_len,
                        args.long_eval_mem_len,
                        "on",
                        clamp_len,
                        metrics,
                        f"eval {time.perf_counter() - start:.0f}",
                    )
                )
    print(
        "| model | train mem_len | eval mem_len | eval same_length | eval clamp_len | val loss | val ppl | "
        "scored tokens | wall s (train+eval) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, train_mem, eval_mem, same_length, clamp, m, wall in rows:
        print(
            f"| {name} | {train_mem} | {eval_mem} | {same_length} | {clamp or 'off'} | {m['eval_loss']:.4f} | "
            f"{m['eval_perplexity']:.2f} | {m['eval_tokens']:,} | {wall} |"
        )
    with_memory, without = rows[0][5]["eval_perplexity"], rows[2][5]["eval_perplexity"]
    print(
        f"\nMemory wins (ppl {with_memory:.2f} < {without:.2f}): {met(with_memory < without)}; "
        f"longer eval memory: {rows[1][5]['eval_perplexity']:.2f}."
    )
    bars = {
        "mem_len 0": without,
        f"mem_len {args.mem_len}": with_memory,
        f"mem_len {args.mem_len},\neval mem_len {args.long_eval_mem_len}": rows[1][5]["eval_perplexity"],
    }
    print(
        save_plot(
            "transfo_xl_wikitext2_memory.png",
            bars=bars,
            ylabel="validation perplexity (lower is better)",
            title=f"WikiText-2, Transformer-XL {args.n_layer} x d_model {args.d_model}, {args.max_steps} steps",
            xlabel="memory in training and evaluation",
        )
    )


# ------------------------------------------------------------------------------------------------------
# (c) training speed against transformers 4.x TransfoXL
# ------------------------------------------------------------------------------------------------------

# Runs in the reference interpreter. Protocol: prints "READY <params>", then for each stdin line "<k>" runs k
# training steps and prints "TIMES <json list of seconds>"; stops at "quit".
REFERENCE_SCRIPT = r"""
import json, sys, time
import torch
from transformers import TransfoXLConfig, TransfoXLLMHeadModel
cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
torch.manual_seed(cfg["seed"])
config = TransfoXLConfig(
    vocab_size=cfg["vocab_size"], d_model=cfg["d_model"], d_embed=cfg["d_model"], n_head=cfg["n_head"],
    d_head=cfg["d_head"], d_inner=cfg["d_inner"], n_layer=cfg["n_layer"], mem_len=cfg["mem_len"],
    tgt_len=cfg["tgt_len"], clamp_len=0, same_length=False, dropout=cfg["dropout"], dropatt=0.0,
    adaptive=False, cutoffs=[], div_val=1, tie_weight=True, untie_r=True, pre_lnorm=False,
)
model = TransfoXLLMHeadModel(config).train()
optimizer = torch.optim.AdamW(model.parameters(), lr=2.5e-4)
g = torch.Generator().manual_seed(cfg["seed"])
mems = None
print("READY", sum(p.numel() for p in model.parameters()), flush=True)
for line in sys.stdin:
    if line.strip() == "quit":
        break
    times = []
    for _ in range(int(line)):
        ids = torch.randint(cfg["vocab_size"], (cfg["batch_size"], cfg["tgt_len"]), generator=g)
        start = time.perf_counter()
        out = model(input_ids=ids, labels=ids, mems=mems)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        mems = out.mems
        times.append(time.perf_counter() - start)
    print("TIMES", json.dumps(times), flush=True)
"""


def read_tagged(process: subprocess.Popen, tag: str, log) -> str:
    for line in process.stdout:
        if line.startswith(tag + " "):
            return line[len(tag) + 1 :].strip()
    log.seek(0)
    raise RuntimeError(f"reference process ended without {tag!r} (exit {process.wait()}): {log.read()[-2000:]}")


def part_train_speed(args: argparse.Namespace) -> None:
    cfg = {
        "vocab_size": args.vocab_size,
        "d_model": args.d_model,
        "n_head": args.n_head,
        "d_head": args.d_model // args.n_head,
        "d_inner": 4 * args.d_model,
        "n_layer": args.n_layer,
        "mem_len": args.train_mem_len,
        "tgt_len": args.train_tgt_len,
        "batch_size": args.train_batch_size,
        "dropout": 0.1,
        "threads": torch.get_num_threads(),
        "seed": args.seed,
    }
    tokens = cfg["batch_size"] * cfg["tgt_len"]
    print(
        f"\n## (c) Training speed vs transformers {REFERENCE_VERSION} TransfoXLLMHeadModel\n\n"
        f"{cfg['n_layer']} layers, d_model {cfg['d_model']}, {cfg['n_head']} heads, d_inner {cfg['d_inner']}, vocab "
        f"{cfg['vocab_size']:,} (non-adaptive, tied), batch {cfg['batch_size']} x tgt_len {cfg['tgt_len']}, mem_len "
        f"{cfg['mem_len']}, dropout 0.1, fp32; forward (labels = input_ids, shifted inside on both) + backward + "
        f"AdamW step, memory carried; {args.train_steps} steps per round, {args.train_rounds} alternating rounds "
        f"after one warm-up round, min step time.\n",
        flush=True,
    )
    why = ensure_reference(
        Path(args.reference_python),
        REFERENCE_VERSION,
        install=args.install_reference,
        check="from transformers import TransfoXLLMHeadModel",
    )
    if why:
        print(f"(c) skipped: {why}")
        return

    model = build_model(args, vocab_size=cfg["vocab_size"], mem_len=cfg["mem_len"], same_length=False, dropout=0.1)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2.5e-4)
    g = torch.Generator().manual_seed(args.seed)
    state = {"mems": None}

    def our_round(steps: int) -> list[float]:
        times = []
        for _ in range(steps):
            ids = torch.randint(cfg["vocab_size"], (cfg["batch_size"], cfg["tgt_len"]), generator=g)
            start = time.perf_counter()
            out = model(input_ids=ids, labels=ids, mems=state["mems"])
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state["mems"] = out.mems
            times.append(time.perf_counter() - start)
        return times

    command = [args.reference_python, "-c", REFERENCE_SCRIPT, json.dumps(cfg)]
    log = tempfile.TemporaryFile(mode="w+")  # the reference's stderr, shown if it fails
    reference = subprocess.Popen(command, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    try:
        reference_params = int(read_tagged(reference, "READY", log))
        ours, theirs = [], []
        for round_index in range(args.train_rounds + 1):  # round 0 warms up both
            reference.stdin.write(f"{args.train_steps}\n")
            reference.stdin.flush()
            reference_times = json.loads(read_tagged(reference, "TIMES", log))
            our_times = our_round(args.train_steps)
            if round_index:
                theirs += reference_times
                ours += our_times
        reference.stdin.write("quit\n")
        reference.stdin.flush()
    finally:
        reference.stdin.close()
        reference.wait(timeout=60)
        log.close()
    our_params = sum(p.numel() for p in model.parameters())
    ratio = min(theirs) / min(ours)
    print("| model | parameters | min step s | tok/s | vs 4.x | target | met |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| transformers {REFERENCE_VERSION} | {reference_params:,} | {min(theirs):.3f} | "
        f"{tokens / min(theirs):,.0f} | 1.00x | - | - |"
    )
    print(
        f"| ours | {our_params:,} | {min(ours):.3f} | {tokens / min(ours):,.0f} | {ratio:.2f}x | >= 1.00x | "
        f"{met(ratio >= 1.0)} |"
    )


# ------------------------------------------------------------------------------------------------------
# (d) adaptive vs full softmax: one training step at 267,735 words
# ------------------------------------------------------------------------------------------------------


def step_config(args: argparse.Namespace, *, vocab_size: int) -> dict:
    """The config fields of the model that parts (d) and (e) train one step of (full softmax, dropout on)."""
    return {
        "vocab_size": vocab_size,
        "d_model": args.d_model,
        "d_embed": args.d_model,
        "n_head": args.n_head,
        "d_head": args.d_model // args.n_head,
        "d_inner": 4 * args.d_model,
        "n_layer": args.n_layer,
        "mem_len": 0,
        "clamp_len": 0,
        "same_length": False,
        "dropout": 0.1,
    }


def part_adaptive_step(args: argparse.Namespace) -> None:
    base = step_config(args, vocab_size=WT103_VOCAB)
    sides = {
        "full softmax": base,
        "adaptive, div_val 1 (base model)": {**base, "cutoffs": PAPER_CUTOFFS, "adaptive": True, "div_val": 1},
        "adaptive, div_val 4 (large model)": {**base, "cutoffs": PAPER_CUTOFFS, "adaptive": True, "div_val": 4},
    }
    shape = (args.step_batch_size, args.step_tgt_len)
    print(
        f"\n## (d) One training step at {WT103_VOCAB:,} words: adaptive vs full softmax\n\n"
        f"{args.n_layer} layers, d_model {args.d_model}, {args.n_head} heads, d_inner {4 * args.d_model}, batch "
        f"{shape[0]} x {shape[1]} Zipf-distributed tokens, fp32, forward + backward; adaptive cutoffs "
        f"{PAPER_CUTOFFS}. Each side in its own process, {args.step_rounds} alternating rounds of "
        f"{args.step_steps} steps after a warm-up step; min step time; peak RSS over the model's resident size.\n",
        flush=True,
    )
    results = measure_steps(
        sides,
        shape=shape,
        steps=args.step_steps,
        rounds=args.step_rounds,
        seed=args.seed,
        threads=torch.get_num_threads(),
    )
    full = results["full softmax"]
    print("| output layer | parameters | min step s | peak step memory MB | faster | less memory | target | met |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        speed, memory = min(full["times"]) / min(r["times"]), full["step_mb"] / r["step_mb"]
        is_full = r is full
        target = "-" if is_full else f">= {TARGET_ADAPTIVE_GAIN:.0f}x both"
        ok = "-" if is_full else met(speed >= TARGET_ADAPTIVE_GAIN and memory >= TARGET_ADAPTIVE_GAIN)
        print(
            f"| {name} | {r['params']:,} | {min(r['times']):.3f} | {r['step_mb']:,.0f} | {speed:.1f}x | "
            f"{memory:.1f}x | {target} | {ok} |",
            flush=True,
        )


# ------------------------------------------------------------------------------------------------------
# (e) gradient checkpointing: training step memory and time, without and with
# ------------------------------------------------------------------------------------------------------


def part_grad_checkpointing(args: argparse.Namespace) -> None:
    config = step_config(args, vocab_size=args.vocab_size)
    plain, checkpointed = "without checkpointing", "with checkpointing"
    shape = (args.ckpt_batch_size, args.ckpt_tgt_len)
    print(
        f"\n## (e) One training step without and with gradient checkpointing\n\n"
        f"{args.n_layer} layers, d_model {args.d_model}, {args.n_head} heads, d_inner {4 * args.d_model}, full "
        f"softmax over {args.vocab_size:,} tokens, batch {shape[0]} x {shape[1]} Zipf-distributed tokens, fp32, "
        f"dropout 0.1, forward + backward. Each side in its own process, {args.step_rounds} alternating rounds "
        f"of {args.step_steps} steps after a warm-up step; min step time; peak RSS over the model's resident size.\n",
        flush=True,
    )
    results = measure_steps(
        {plain: config, checkpointed: config},
        shape=shape,
        steps=args.step_steps,
        rounds=args.step_rounds,
        seed=args.seed,
        threads=torch.get_num_threads(),
        checkpointed=frozenset({checkpointed}),
    )
    base, ckpt = results[plain], results[checkpointed]
    memory_gain = base["step_mb"] / ckpt["step_mb"]
    time_cost = min(ckpt["times"]) / min(base["times"])
    print("| side | first-step loss | min step s | peak step memory MB | time ratio | memory ratio |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['loss']:.6f} | {min(r['times']):.3f} | {r['step_mb']:,.0f} | "
            f"{min(r['times']) / min(base['times']):.2f}x | {r['step_mb'] / base['step_mb']:.2f}x |"
        )
    print(
        f"\nmemory: {memory_gain:.1f}x less (target >= {TARGET_CHECKPOINTING_MEMORY_GAIN:.0f}x: "
        f"{met(memory_gain >= TARGET_CHECKPOINTING_MEMORY_GAIN)}); time: {time_cost:.2f}x (target <= "
        f"{TARGET_CHECKPOINTING_TIME_COST}x: {met(time_cost <= TARGET_CHECKPOINTING_TIME_COST)})",
        flush=True,
    )


# ------------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = parser.add_argument_group("parts (at least one)")
    parts.add_argument("--eval_speed", action="store_true", help="(a) evaluation speed, memory vs sliding window")
    parts.add_argument("--wikitext2", action="store_true", help="(b) WikiText-2 perplexity, memory vs mem_len=0")
    parts.add_argument("--train_speed", action="store_true", help="(c) training tok/s vs transformers 4.x")
    parts.add_argument("--adaptive_step", action="store_true", help="(d) adaptive vs full softmax training step")
    parts.add_argument("--grad_checkpointing", action="store_true", help="(e) training memory, checkpointing")
    parts.add_argument("--all", action="store_true", help="(a) to (e)")
    model = parser.add_argument_group("model (all parts)")
    model.add_argument("--n_layer", type=int, default=4)
    model.add_argument("--d_model", type=int, default=256, help="d_inner = 4 d_model, d_head = d_model / n_head")
    model.add_argument("--n_head", type=int, default=4)
    model.add_argument("--vocab_size", type=int, default=10_000, help="vocabulary of the random-token parts (a), (c)")
    model.add_argument("--cutoffs", type=int, nargs="*", default=[], help="(a): adaptive softmax clusters")
    model.add_argument("--div_val", type=int, default=1, help="(a): adaptive embedding width divisor")
    add_run_flags(model)
    a = parser.add_argument_group("(a) evaluation speed")
    a.add_argument("--contexts", type=int, nargs="+", default=[128, 256, 512, 1024], help="attention lengths C")
    a.add_argument("--eval_tgt_len", type=int, default=128, help="Transformer-XL evaluation segment length")
    a.add_argument("--eval_batch_size", type=int, default=1, help="streams (and windows) evaluated together")
    a.add_argument("--eval_txl_tokens", type=int, default=1024, help="Transformer-XL tokens per round")
    a.add_argument("--eval_windows", type=int, default=16, help="vanilla predictions per round")
    a.add_argument("--eval_rounds", type=int, default=5, help="alternating timed rounds")
    b = parser.add_argument_group("(b) WikiText-2 through the recipe")
    b.add_argument("--data_dir", type=Path, default=WIKITEXT2_DIR)
    b.add_argument("--lm_vocab_size", type=int, default=10_000, help="word tokenizer cap (33,278 = all of WT-2)")
    b.add_argument("--lm_layers", type=int, default=2, help="n_layer of the (b) model")
    b.add_argument("--lm_d_model", type=int, default=128, help="d_model of the (b) model")
    b.add_argument("--batch_size", type=int, default=16, help="training streams")
    b.add_argument("--tgt_len", type=int, default=64, help="training and evaluation segment length")
    b.add_argument("--mem_len", type=int, default=64, help="memory of the memory model (the other has 0)")
    b.add_argument("--long_eval_mem_len", type=int, default=256, help="the memory model's longer eval memory")
    b.add_argument("--max_steps", type=int, default=1000)
    b.add_argument("--learning_rate", type=float, default=2e-3)
    b.add_argument("--dropout", type=float, default=0.0, help="less than one epoch: no overfitting to fight")
    c = parser.add_argument_group("(c) training speed vs transformers 4.x")
    c.add_argument(
        "--reference_python",
        default=str(default_reference_python(REFERENCE_VERSION)),
        help="interpreter with transformers 4.x",
    )
    c.add_argument(
        "--install_reference",
        action="store_true",
        help=f"build that venv (our torch release, then transformers=={REFERENCE_VERSION})",
    )
    c.add_argument("--train_batch_size", type=int, default=8)
    c.add_argument("--train_tgt_len", type=int, default=128)
    c.add_argument("--train_mem_len", type=int, default=128)
    c.add_argument("--train_steps", type=int, default=3, help="timed steps per round")
    c.add_argument("--train_rounds", type=int, default=5, help="alternating timed rounds")
    d = parser.add_argument_group("(d) adaptive vs full softmax")
    d.add_argument("--step_batch_size", type=int, default=8, help="streams (wikitext103_base.yaml's per GPU)")
    d.add_argument("--step_tgt_len", type=int, default=150, help="tokens per stream (wikitext103_base.yaml's)")
    d.add_argument("--step_steps", type=int, default=3, help="timed steps per process")
    d.add_argument("--step_rounds", type=int, default=2, help="alternating processes per side (d and e)")
    e = parser.add_argument_group("(e) gradient checkpointing (also --step_steps, --step_rounds)")
    e.add_argument("--ckpt_batch_size", type=int, default=8, help="streams")
    e.add_argument("--ckpt_tgt_len", type=int, default=512, help="tokens per stream")
    args = parser.parse_args()
    if args.all:
        args.eval_speed = args.wikitext2 = args.train_speed = args.adaptive_step = args.grad_checkpointing = True
    if not (args.eval_speed or args.wikitext2 or args.train_speed or args.adaptive_step or args.grad_checkpointing):
        parser.error(
            "choose at least one of --eval_speed, --wikitext2, --train_speed, --adaptive_step, "
            "--grad_checkpointing, --all"
        )
    if args.d_model % args.n_head or args.lm_d_model % args.n_head:
        parser.error("d_model must be divisible by n_head")
    return args


def main() -> None:
    args = parse_args()
    begin("Transformer-XL bench", args)
    if args.eval_speed:
        part_eval_speed(args)
    if args.wikitext2:
        part_wikitext2(argparse.Namespace(**{**vars(args), "n_layer": args.lm_layers, "d_model": args.lm_d_model}))
    if args.train_speed:
        part_train_speed(args)
    if args.adaptive_step:
        part_adaptive_step(args)
    if args.grad_checkpointing:
        part_grad_checkpointing(args)


if __name__ == "__main__":
    main()
