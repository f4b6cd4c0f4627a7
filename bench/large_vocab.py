"""Large vocabularies, side by side: five training losses of one Transformer-XL backbone.

    python bench/large_vocab.py --cost      # (a) step time and peak memory at 267,735 words (~5 min)
    python bench/large_vocab.py --quality   # (b) WikiText-2, equal wall-clock, exact perplexity (~12 min)

Losses (`TransformerXLConfig.loss_type`): `full` softmax; `chunked`, the same exact cross-entropy by the fused
linear cross-entropy (`custom_models/nce_lm/linear_cross_entropy.py`: `loss_chunk_size` tokens at a time, each
block's gradients computed in the forward pass, the weight gradient accumulated in one buffer; the config's
default block size unless `--chunk_size`); `adaptive` softmax (Grave et al. 2017, the
paper's cutoffs); `nce` and `ranking` with k noise ids from the unigram distribution, shared by the batch.

(a) Cost. A small backbone (4 layers, d_model 256) with its output layer at WikiText-103's 267,735 words,
    one batch of 8 x 150 Zipf-distributed tokens (wikitext103_base.yaml's per-GPU batch), fp32, forward +
    backward, no optimizer. Method of `bench/_train_step.py`: each loss in its own process, alternated
    rounds, minimum step time after a warm-up step, peak RSS (`ru_maxrss`) over the RSS once the model is
    built. `full` and `chunked` start from the same weights on the same batch, so their first-step losses
    must agree (the exactness claim).
(b) Quality at equal wall-clock. WikiText-2 (`../shared/data/wikitext2`, skipped if absent) with its whole
    33,278-word vocabulary (the project's word tokenizer, ids by frequency, so the adaptive cutoffs 2,000 /
    10,000 cut by frequency). Every loss trains the same backbone (2 layers, d_model 128, 16 streams x 64
    tokens, memory 64, same seed and initial weights, AdamW lr 1e-3, 50 warm-up steps, gradient clipping
    0.25, no dropout: less than one epoch) for `--budget_seconds` of training (evaluation pauses the clock).
    Every `--eval_every` seconds: exact validation perplexity on the first `--curve_tokens` validation
    tokens (for the curve); at the end, on the validation set (the first `--valid_tokens`, default all; memory
    carried, 8 streams), with the
    mean / std of log Z for the full-table losses. The plot (matplotlib, optional extra `plot`) is written to
    `bench/results/large_vocab_wikitext2.png`; without matplotlib the tables are printed all the same.

Targets: (a) `nce` and `ranking` >= 10x faster per step than `full`, `adaptive` >= 5x; `chunked` >= 5x less
peak memory than `full` and no slower (time ratio >= 1.0) at the same loss to 1e-5. The floor of every exact
loss is the dense `[vocab, d]` weight gradient (printed under the table, with `chunked`'s distance to it).
(b) the best sampled or adaptive loss reaches a lower
exact perplexity than `full`. Timings on a shared 2-core CPU are noisy: read ratios, not seconds.
"""

import argparse
import math
import time
from pathlib import Path

import torch
from _cli import add_run_flags, begin, met
from _plot import save_plot
from _train_step import measure_steps

from custom_models.transfo_xl import TransformerXLConfig, TransformerXLForCausalLM
from custom_models.transfo_xl.linear_cross_entropy import default_chunk_size
from custom_models.transfo_xl.sampled_losses import count_tokens, noise_log_probs_from_counts

LOSSES = ("full", "chunked", "adaptive", "nce", "ranking")
WT103_VOCAB = 267735
PAPER_CUTOFFS = [20000, 40000, 200000]
WIKITEXT2_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/wikitext2"
PLOT = "large_vocab_wikitext2.png"  # under bench/results/
TARGET_SAMPLED_SPEEDUP, TARGET_ADAPTIVE_SPEEDUP, TARGET_CHUNKED_MEMORY = 10.0, 5.0, 5.0


def loss_fields(loss_type: str, args: argparse.Namespace, *, cutoffs: list[int]) -> dict:
    """The config fields that select `loss_type` (everything else is the shared backbone)."""
    if loss_type == "adaptive":
        return {"loss_type": "adaptive", "cutoffs": cutoffs, "adaptive": True, "div_val": 1}
    return {"loss_type": loss_type, "num_noise_samples": args.num_noise_samples, "loss_chunk_size": args.chunk_size}


# ------------------------------------------------------------------------------------------------------
# (a) cost at 267,735 words
# ------------------------------------------------------------------------------------------------------


def part_cost(args: argparse.Namespace) -> None:
    base = {
        "vocab_size": WT103_VOCAB,
        "d_model": 256,
        "d_embed": 256,
        "n_head": 4,
        "d_head": 64,
        "d_inner": 1024,
        "n_layer": 4,
        "mem_len": 0,
        "clamp_len": 0,
        "same_length": False,
        "dropout": 0.1,
    }
    sides = {loss: {**base, **loss_fields(loss, args, cutoffs=PAPER_CUTOFFS)} for loss in LOSSES}
    chunk = (
        args.chunk_size or f"{default_chunk_size(vocab_size=WT103_VOCAB, hidden_size=base['d_embed'])} (the default)"
    )
    shape = (8, 150)
    print(
        f"\n## (a) One training step at {WT103_VOCAB:,} words\n\n4 layers, d_model 256, batch {shape[0]} x "
        f"{shape[1]} Zipf-distributed tokens, fp32, forward + backward; adaptive cutoffs {PAPER_CUTOFFS} "
        f"(div_val 1); nce / ranking k = {args.num_noise_samples} shared; chunked {chunk} tokens per "
        f"block. Each loss in its own process, {args.rounds} alternating rounds of {args.steps} steps after a "
        "warm-up step; min step time; peak RSS over the model's resident size.\n",
        flush=True,
    )
    results = measure_steps(
        sides, shape=shape, steps=args.steps, rounds=args.rounds, seed=args.seed, threads=torch.get_num_threads()
    )
    full = results["full"]
    targets = {"nce": "faster", "ranking": "faster", "adaptive": "faster", "chunked": "memory"}
    print(
        "| loss | parameters | min step s | peak step MB | faster than full | less memory | first-step loss "
        "| target | met |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for loss, r in results.items():
        speed, memory = min(full["times"]) / min(r["times"]), full["step_mb"] / r["step_mb"]
        if loss == "full":
            target, ok = "-", "-"
        elif targets[loss] == "faster":
            bar = TARGET_ADAPTIVE_SPEEDUP if loss == "adaptive" else TARGET_SAMPLED_SPEEDUP
            target, ok = f">= {bar:.0f}x faster", met(speed >= bar)
        else:
            same = abs(r["loss"] - full["loss"]) <= 1e-5
            target = f">= {TARGET_CHUNKED_MEMORY:.0f}x less memory, >= 1.0x speed, loss within 1e-5"
            ok = met(memory >= TARGET_CHUNKED_MEMORY and speed >= 1.0 and same)
        print(
            f"| {loss} | {r['params']:,} | {min(r['times']):.3f} | {r['step_mb']:,.0f} | {speed:.1f}x | "
            f"{memory:.1f}x | {r['loss']:.6f} | {target} | {ok} |",
            flush=True,
        )
    print(f"\nchunked - full first-step loss: {results['chunked']['loss'] - full['loss']:+.2e} (same weights, batch)")
    floor_mb = WT103_VOCAB * base["d_embed"] * 4 / 2**20
    print(
        f"floor of an exact loss: the dense [{WT103_VOCAB:,}, {base['d_embed']}] float32 weight gradient, "
        f"{floor_mb:,.0f} MB; chunked's peak step memory is {results['chunked']['step_mb'] / floor_mb:.1f}x it "
        "(over the floor: the backbone's activations, one block of scores, and the allocator's slack; the tied "
        "table's input lookup adds its rows into the loss's gradient instead of building a second [vocab, d])"
    )


# ------------------------------------------------------------------------------------------------------
# (b) quality at equal wall-clock on WikiText-2
# ------------------------------------------------------------------------------------------------------


def load_wikitext2(data_dir: Path) -> dict:
    from data.streams import encode_stream
    from data.tokenizers import train_tokenizer

    lines = {
        split: (data_dir / f"{split}.txt").read_text(encoding="utf-8").splitlines() for split in ("train", "valid")
    }
    tokenizer = train_tokenizer(lines["train"], kind="word", vocab_size=40_000)  # every word type of WT-2
    streams = {split: encode_stream(text, tokenizer) for split, text in lines.items()}
    return {"vocab_size": len(tokenizer), **streams}


def batchify(stream: torch.Tensor, num_streams: int) -> tuple[torch.Tensor, torch.Tensor]:
    """inputs, targets `[num_streams, length]`: the stream cut into `num_streams` contiguous rows; targets are
    the next tokens (target_ids convention, so every token is scored once across segments)."""
    length = (stream.numel() - 1) // num_streams
    inputs = stream[: num_streams * length].view(num_streams, length)
    targets = stream[1 : num_streams * length + 1].view(num_streams, length)
    return inputs, targets


@torch.no_grad()
def evaluate(model: TransformerXLForCausalLM, stream: torch.Tensor, args: argparse.Namespace) -> dict:
    """Exact perplexity of `stream` (8 streams, segments of tgt_len, memory carried) and log Z statistics."""
    model.eval()
    inputs, targets = batchify(stream, 8)
    mems, nll, tokens, log_z, log_z_sq = None, 0.0, 0, 0.0, 0.0
    for start in range(0, inputs.shape[1], args.tgt_len):
        segment = slice(start, start + args.tgt_len)
        out = model(input_ids=inputs[:, segment], target_ids=targets[:, segment], mems=mems)
        mems, count = out.mems, targets[:, segment].numel()
        nll, tokens = nll + out.loss.item() * count, tokens + count
        if out.log_partition_mean is not None:
            mean, std = out.log_partition_mean.item(), out.log_partition_std.item()
            log_z, log_z_sq = log_z + mean * count, log_z_sq + (std**2 + mean**2) * count
    model.train()
    result = {"perplexity": math.exp(nll / tokens), "tokens": tokens}
    if model.config.loss_type != "adaptive":
        mean = log_z / tokens
        result.update(log_z_mean=mean, log_z_std=max(log_z_sq / tokens - mean**2, 0.0) ** 0.5)
    return result


def train_for_budget(loss_type: str, data: dict, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    config = TransformerXLConfig(
        vocab_size=data["vocab_size"],
        d_model=128,
        d_embed=128,
        n_head=4,
        d_head=32,
        d_inner=512,
        n_layer=2,
        mem_len=args.tgt_len,
        clamp_len=0,
        same_length=False,
        dropout=0.0,
        dropatt=0.0,
        noise_seed=args.seed,
        **loss_fields(loss_type, args, cutoffs=[2000, 10000]),
    )
    model = TransformerXLForCausalLM(config).train()
    if loss_type in ("nce", "ranking"):
        counts = count_tokens([data["train"]], vocab_size=data["vocab_size"])
        model.set_noise_distribution(noise_log_probs_from_counts(counts, noise_power=args.noise_power))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 50))
    inputs, targets = batchify(data["train"], 16)
    curve_stream = data["valid"][: args.curve_tokens + 1]
    curve, mems, step, position, trained = [], None, 0, 0, 0.0
    next_eval = args.eval_every
    while trained < args.budget_seconds:
        if position + args.tgt_len > inputs.shape[1]:
            mems, position = None, 0  # a new pass over the streams: nothing before it to remember
        segment = slice(position, position + args.tgt_len)
        start = time.perf_counter()
        out = model(input_ids=inputs[:, segment], target_ids=targets[:, segment], mems=mems)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        trained += time.perf_counter() - start
        mems, position, step = out.mems, position + args.tgt_len, step + 1
        if trained >= next_eval or trained >= args.budget_seconds:
            curve.append((trained, step, evaluate(model, curve_stream, args)["perplexity"]))
            print(f"  {loss_type}: {trained:6.1f} s, step {step}, curve perplexity {curve[-1][2]:.1f}", flush=True)
            next_eval += args.eval_every
    final = evaluate(model, data["valid"][: args.valid_tokens + 1] if args.valid_tokens else data["valid"], args)
    return {"loss_type": loss_type, "steps": step, "seconds": trained, "curve": curve, **final}


def part_quality(args: argparse.Namespace) -> None:
    if not (args.data_dir / "train.txt").is_file():
        print(f"\n## (b) skipped: no WikiText-2 at {args.data_dir}")
        return
    data = load_wikitext2(args.data_dir)
    print(
        f"\n## (b) WikiText-2 at equal wall-clock: {args.budget_seconds:.0f} s of training per loss\n\n"
        f"Vocabulary {data['vocab_size']:,}; 2 layers, d_model 128, 16 x {args.tgt_len} tokens per step, memory "
        f"{args.tgt_len}; AdamW lr 1e-3; nce / ranking k = {args.num_noise_samples}, noise_power {args.noise_power}; "
        f"adaptive cutoffs [2000, 10000]. Exact perplexity on "
        f"{args.valid_tokens or data['valid'].numel() - 1:,} validation tokens.\n",
        flush=True,
    )
    results = [train_for_budget(loss, data, args) for loss in LOSSES]
    full = next(r for r in results if r["loss_type"] == "full")
    print("\n| loss | steps | exact valid perplexity | vs full | log Z mean | log Z std |")
    print("|---|---|---|---|---|---|")
    for r in results:
        log_z = (f"{r['log_z_mean']:.2f} | {r['log_z_std']:.2f}") if "log_z_mean" in r else "- | -"
        print(
            f"| {r['loss_type']} | {r['steps']:,} | {r['perplexity']:.1f} | "
            f"{r['perplexity'] / full['perplexity']:.2f}x | {log_z} |"
        )
    best = min((r for r in results if r["loss_type"] in ("adaptive", "nce", "ranking")), key=lambda r: r["perplexity"])
    print(
        f"\nbest sampled or adaptive: {best['loss_type']} {best['perplexity']:.1f} vs full {full['perplexity']:.1f}"
        f"; target lower than full: {met(best['perplexity'] < full['perplexity'])}"
    )
    print(f"\ncurve (training seconds, steps, perplexity on the first {args.curve_tokens:,} validation tokens):")
    for r in results:
        print(f"- {r['loss_type']}: " + ", ".join(f"{s:.0f} s / {n} / {p:.1f}" for s, n, p in r["curve"]))
    curves = {
        f"{r['loss_type']} ({r['steps']} steps)": ([s for s, _, _ in r["curve"]], [p for _, _, p in r["curve"]])
        for r in results
    }
    print(
        save_plot(
            PLOT,
            lines=curves,
            title="Transformer-XL on WikiText-2, 33,278 words",
            yscale="log",
            xlabel="training seconds (2-core CPU)",
            ylabel=f"exact validation perplexity (first {args.curve_tokens:,} tokens)",
        )
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cost", action="store_true", help="(a) step time and memory at 267,735 words")
    parser.add_argument("--quality", action="store_true", help="(b) WikiText-2 perplexity at equal wall-clock")
    parser.add_argument("--num_noise_samples", type=int, default=1024, help="k for nce / ranking")
    parser.add_argument("--noise_power", type=float, default=0.75, help="(b) q ∝ count ** noise_power")
    parser.add_argument("--chunk_size", type=int, default=None, help="tokens per block of chunked (default: config's)")
    add_run_flags(parser)
    parser.add_argument("--steps", type=int, default=2, help="(a) timed steps per process")
    parser.add_argument("--rounds", type=int, default=2, help="(a) alternating processes per loss")
    parser.add_argument("--data_dir", type=Path, default=WIKITEXT2_DIR)
    parser.add_argument("--budget_seconds", type=float, default=90.0, help="(b) training seconds per loss")
    parser.add_argument("--eval_every", type=float, default=15.0, help="(b) seconds between curve points")
    parser.add_argument("--curve_tokens", type=int, default=16_384, help="(b) validation tokens per curve point")
    parser.add_argument("--valid_tokens", type=int, default=0, help="(b) final evaluation on this many (0: all)")
    parser.add_argument("--tgt_len", type=int, default=64, help="(b) segment length and memory")
    args = parser.parse_args()
    if not (args.cost or args.quality):
        parser.error("choose --cost and/or --quality")
    return args


def main() -> None:
    args = parse_args()
    begin("Large-vocabulary losses bench", args)
    if args.cost:
        part_cost(args)
    if args.quality:
        part_quality(args)


if __name__ == "__main__":
    main()
