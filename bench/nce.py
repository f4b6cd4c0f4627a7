"""Speed of the NCE output layer against the full softmax, measured in one run.

Four parts, (a)-(d), chosen by `--parts`:

    python bench/nce.py                                   # (a) output layer + loss, 10k/50k/250k
    python bench/nce.py --vocab_sizes 10000 50000         # skip the 250k full softmax (~12 GB)
    python bench/nce.py --parts b --vocab_sizes 10000     # (b) only: Trainer steps, tokens/s
    python bench/nce.py --parts c d --budget_seconds 600  # (c) WikiText-2 perplexity, (d) log Z
    python bench/nce.py --parts e --vocab_sizes 50257 250000  # (e) memory of the exact `full` loss

(a) Output layer + loss alone, forward and backward: `full` is `F.linear` + `cross_entropy`
    (what GPT2LMHeadModel does, plus the bias); `nce` is `NCELMForCausalLM.sampled_token_losses`
    (one shared draw of k ids, one `[k, d]` gather, one `[N, d] x [d, k]` product, logsigmoid).
    N tokens, hidden d, fp32. Repetitions alternate full / nce and the minimum is reported
    (the most robust estimator on a shared machine). The 250k full softmax is timed once.
(b) Whole training steps through `transformers.Trainer` (2-layer GPT-2 backbone, hidden 256,
    tied embeddings, `optim="adamw_torch_fused"`, k shared, fp32), minimum step time -> tokens/s.
    Each vocabulary runs in a fresh subprocess (a 250k full-softmax step leaves the allocator in a
    state that slows later steps 2-4x in the same process); the 250k full softmax is timed for 1 step.
(c) WikiText-2 (`../shared/data/wikitext2`, read in place, skipped if absent): a small model trained
    with `nce`, `ranking` and `full` for the same wall-clock budget (`--budget_seconds` each), then
    the exact validation perplexity (full softmax over the word vocabulary) of each. Every
    `--eval_every` seconds of training (evaluation pauses the clock), the exact perplexity of the first
    `--curve_tokens` validation tokens: the curve drawn to `bench/results/nce_wikitext2.png`
    (matplotlib, optional extra `plot`; without it the tables are printed all the same).
(d) Self-normalisation of the `nce` / `ranking` models from (c): mean / std of log Z(h) and the fraction |log Z| > 1.
(e) Memory of one `loss_type: full` training step (forward + backward, 2-layer backbone, hidden `--hidden`,
    `--e_tokens` tokens): the model's exact loss, fused with the output layer (`linear_cross_entropy.py`,
    default block size), against the loss as it was computed before, `F.cross_entropy` of the full
    `[N, V]` logits. Each side in its own process, alternated over `--e_rounds`; peak RSS over the RSS once
    the model is built; first-step losses must agree to 1e-5 (same weights, same tokens).

Targets (2-core CPU): (a) >= 15x at 10k, 50x at 50k, 100x at 250k; (b) >= 2.5x at
10k, 6x at 50k, 25x at 250k; (c) nce perplexity within 10% of full, or better; (e) >= 5x less memory at
250k at the same loss (1e-5). Timings on a
shared CPU are noisy: compare ratios, not seconds.
"""

import argparse
import datetime
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _plot import save_plot

from custom_models.nce_lm import NCELMConfig, NCELMForCausalLM, count_tokens, noise_log_probs_from_counts

TARGETS_HEAD = {10_000: 15.0, 50_000: 50.0, 250_000: 100.0}
TARGETS_END_TO_END = {10_000: 2.5, 50_000: 6.0, 250_000: 25.0}
WIKITEXT2 = Path(__file__).resolve().parents[1].parent / "shared/data/wikitext2"


def zipf_log_q(vocab_size: int) -> torch.Tensor:
    counts = 1e9 * torch.arange(1, vocab_size + 1, dtype=torch.float64) ** -1.0
    return noise_log_probs_from_counts(counts)


def build_model(vocab_size: int, *, hidden: int, layers: int, num_noise_samples: int, loss_type: str):
    torch.manual_seed(0)
    config = NCELMConfig(
        vocab_size=vocab_size,
        n_embd=hidden,
        n_layer=layers,
        n_head=4,
        n_positions=128,
        num_noise_samples=num_noise_samples,
        loss_type=loss_type,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = NCELMForCausalLM(config).train()
    model.set_noise_distribution(zipf_log_q(vocab_size))
    return model


def time_call(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_head(vocab_size: int, args) -> dict:
    model = build_model(
        vocab_size, hidden=args.hidden, layers=1, num_noise_samples=args.num_noise_samples, loss_type="nce"
    )
    weight, bias = model.lm_head.weight, model.lm_head.bias
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(args.tokens, args.hidden, generator=g).requires_grad_(True)
    targets = torch.multinomial(model.noise_log_probs.exp(), args.tokens, replacement=True, generator=g)

    def full_step():
        model.zero_grad(set_to_none=True)
        hidden.grad = None
        F.cross_entropy(F.linear(hidden, weight, bias), targets).backward()

    def nce_step():
        model.zero_grad(set_to_none=True)
        hidden.grad = None
        model.sampled_token_losses(hidden, targets).mean().backward()

    full_reps = 1 if vocab_size > 100_000 else args.repetitions
    nce_step()  # warm-up (alias table, allocator)
    if full_reps > 1:
        full_step()
    full_times, nce_times = [], []
    for rep in range(max(full_reps, args.repetitions)):  # alternate the two
        if rep < full_reps:
            full_times.append(time_call(full_step))
        nce_times.append(time_call(nce_step))
    full, nce = min(full_times), min(nce_times)
    return {
        "vocab": vocab_size,
        "full": full,
        "nce": nce,
        "ratio": full / nce,
        "full_reps": full_reps,
        "target": TARGETS_HEAD.get(vocab_size),
    }


def bench_end_to_end(vocab_size: int, args) -> dict:
    from torch.utils.data import Dataset
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class RandomTokens(Dataset):
        def __init__(self, log_q, size):
            g = torch.Generator().manual_seed(0)
            self.ids = torch.multinomial(log_q.exp(), size * 128, replacement=True, generator=g).view(size, 128)

        def __len__(self):
            return len(self.ids)

        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "labels": self.ids[i]}

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.start = [], None

        def on_step_begin(self, *unused, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, *unused, **kwargs):
            self.times.append(time.perf_counter() - self.start)

    result = {"vocab": vocab_size, "target": TARGETS_END_TO_END.get(vocab_size)}
    batch = args.tokens // 128
    for loss_type in ("nce", "full"):
        model = build_model(
            vocab_size, hidden=256, layers=2, num_noise_samples=args.num_noise_samples, loss_type=loss_type
        )
        steps = 1 if (loss_type == "full" and vocab_size > 100_000) else args.steps
        timer = StepTimer()
        with tempfile.TemporaryDirectory() as output_dir:
            training_args = TrainingArguments(
                output_dir=output_dir,
                per_device_train_batch_size=batch,
                max_steps=steps + 1,
                use_cpu=True,
                optim="adamw_torch_fused",
                save_strategy="no",
                report_to="none",
                logging_strategy="no",
                dataloader_num_workers=0,
                disable_tqdm=True,
            )
            dataset = RandomTokens(model.noise_log_probs, batch * (steps + 1))
            Trainer(model=model, args=training_args, train_dataset=dataset, callbacks=[timer]).train()
        result[loss_type] = min(timer.times[1:])  # first step: warm-up
    result["ratio"] = result["full"] / result["nce"]
    return result


def end_to_end_in_subprocess(vocab_size: int, args) -> dict:
    """(b) for one vocabulary in a fresh interpreter (see the module docstring); returns its result dict."""
    command = [
        sys.executable,
        __file__,
        "--b_worker",
        str(vocab_size),
        "--tokens",
        str(args.tokens),
        "--num_noise_samples",
        str(args.num_noise_samples),
        "--steps",
        str(args.steps),
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"(b) worker for vocab {vocab_size} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def load_wikitext2(args) -> dict | None:
    """Word-level WikiText-2 streams (train, validation) read in place from ../shared/data, or None."""
    if not (WIKITEXT2 / "train.txt").is_file():
        return None
    from data.lm_corpus import load_text_corpus
    from data.streams import encode_stream
    from data.tokenizers import train_tokenizer

    corpus = load_text_corpus(train_file=str(WIKITEXT2 / "train.txt"), validation_file=str(WIKITEXT2 / "valid.txt"))
    tokenizer = train_tokenizer(corpus["train"]["text"], kind="word", vocab_size=args.c_vocab_size)
    streams = {split: encode_stream(corpus[split]["text"], tokenizer) for split in ("train", "validation")}
    if args.eval_tokens:
        streams["validation"] = streams["validation"][: args.eval_tokens]
    return {"vocab_size": len(tokenizer), **streams}


def bench_budget(loss_type: str, data: dict, args) -> dict:
    """(c) + (d) for one loss: train for `--budget_seconds` of wall clock, then evaluate exactly."""
    from transformers import TrainerCallback, TrainingArguments, default_data_collator

    from data.streams import TokenBlocks
    from recipes.nce_lm.nce_trainer import NCETrainer

    class Budget(TrainerCallback):
        """Stops after `--budget_seconds` of training; every `--eval_every` seconds of it, one curve point
        (training seconds, step, exact perplexity of the first `--curve_tokens` validation tokens). The clock
        runs only while training: a curve evaluation pauses it."""

        def on_train_begin(self, *unused, **kwargs):
            self.trained, self.next_eval, self.curve, self.last = 0.0, args.eval_every, [], time.perf_counter()

        def on_step_end(self, unused_args, state, control, **kwargs):
            self.trained += time.perf_counter() - self.last
            if self.trained >= min(self.next_eval, args.budget_seconds):
                ppl = trainer.evaluate(curve_blocks, metric_key_prefix="curve")["curve_perplexity"]
                self.curve.append((self.trained, state.global_step, ppl))
                print(f"  {loss_type}: {self.trained:.0f} s, step {state.global_step}, curve ppl {ppl:.1f}", flush=True)
                self.next_eval += args.eval_every
            control.should_training_stop = self.trained >= args.budget_seconds
            self.last = time.perf_counter()

    torch.manual_seed(0)
    config = NCELMConfig(
        vocab_size=data["vocab_size"],
        n_embd=args.c_hidden,
        n_layer=2,
        n_head=4,
        n_positions=args.block_size,
        loss_type=loss_type,
        num_noise_samples=args.num_noise_samples,
        bos_token_id=1,
        eos_token_id=1,
    )
    model = NCELMForCausalLM(config)
    budget = Budget()
    curve_blocks = TokenBlocks(data["validation"][: args.curve_tokens], block_size=args.block_size)
    counts = count_tokens([data["train"]], vocab_size=data["vocab_size"])
    model.set_noise_distribution(noise_log_probs_from_counts(counts))
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=16,
            max_steps=10**7,
            learning_rate=args.learning_rate,
            lr_scheduler_type="constant_with_warmup",
            warmup_steps=50,
            optim="adamw_torch_fused",
            use_cpu=True,
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=0,
        )
        trainer = NCETrainer(
            model=model,
            args=training_args,
            train_dataset=TokenBlocks(data["train"], block_size=args.block_size),
            eval_dataset=TokenBlocks(data["validation"], block_size=args.block_size),
            data_collator=default_data_collator,
            callbacks=[budget],
        )
        trainer.train()
        metrics = trainer.evaluate()
    return {"loss_type": loss_type, "steps": trainer.state.global_step, "curve": budget.curve, **metrics}


# --------------------------------------------------------------------------------------------------
# (e) memory of the exact loss: fused with the output layer vs cross-entropy of the full logits
# --------------------------------------------------------------------------------------------------

TARGET_FUSED_MEMORY = 5.0


def full_loss_step(vocab_size: int, side: str, args) -> dict:
    """One `loss_type: full` training step in this process: `side` "fused" (the model's loss) or "logits"
    (F.cross_entropy of the model's full logits); peak RSS over the RSS once the model is built."""
    model = build_model(vocab_size, hidden=args.hidden, layers=2, num_noise_samples=1, loss_type="full")
    ids = torch.multinomial(
        zipf_log_q(vocab_size).exp(), args.e_tokens, replacement=True, generator=torch.Generator().manual_seed(0)
    ).view(-1, 128)
    resident_mb = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    start = time.perf_counter()
    if side == "fused":
        loss = model(input_ids=ids, labels=ids).loss
    else:
        logits = model(input_ids=ids).logits  # [b, t, V]
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, vocab_size).float(), ids[:, 1:].reshape(-1))
    loss.backward()
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step_mb": peak_mb - resident_mb, "loss": loss.item(), "seconds": seconds}


def full_loss_in_subprocesses(vocab_size: int, args) -> dict:
    """`{side: {"step_mb": max over rounds, "loss", "seconds": min}}`, sides alternated, one process each."""
    results = {}
    for _ in range(args.e_rounds):
        for side in ("logits", "fused"):
            command = [
                sys.executable,
                __file__,
                "--e_worker",
                str(vocab_size),
                "--e_side",
                side,
                "--hidden",
                str(args.hidden),
                "--e_tokens",
                str(args.e_tokens),
            ]
            if args.threads:
                command += ["--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"(e) {side} at {vocab_size} failed: {done.stderr[-2000:]}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            best = results.setdefault(side, r)
            best.update(step_mb=max(best["step_mb"], r["step_mb"]), seconds=min(best["seconds"], r["seconds"]))
    return results


def print_header(args) -> None:
    print(
        f"# bench/nce.py, {datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.node()} ({platform.machine()}, "
        f"{torch.get_num_threads()} torch threads), torch {torch.__version__}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=["a", "b", "c", "d", "e"], default=["a"], help="what to run")
    parser.add_argument("--vocab_sizes", type=int, nargs="+", default=[10_000, 50_000, 250_000])
    parser.add_argument("--tokens", type=int, default=4096, help="tokens per step (N)")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size d for (a)")
    parser.add_argument("--num_noise_samples", type=int, default=256, help="k, shared per step")
    parser.add_argument("--repetitions", type=int, default=5, help="timed repetitions per cell in (a)")
    parser.add_argument("--end_to_end", action="store_true", help="same as adding b to --parts")
    parser.add_argument("--steps", type=int, default=3, help="timed Trainer steps per cell in (b)")
    parser.add_argument("--budget_seconds", type=float, default=600.0, help="(c) training wall clock per loss")
    parser.add_argument("--c_vocab_size", type=int, default=40_000, help="(c) word vocabulary cap")
    parser.add_argument("--c_hidden", type=int, default=128, help="(c) hidden size")
    parser.add_argument("--block_size", type=int, default=64, help="(c) tokens per block")
    parser.add_argument("--batch_size", type=int, default=32, help="(c) blocks per step")
    parser.add_argument("--learning_rate", type=float, default=3e-3, help="(c) constant after warm-up")
    parser.add_argument("--eval_tokens", type=int, default=0, help="(c) validation tokens scored; 0: all")
    parser.add_argument("--eval_every", type=float, default=60.0, help="(c) training seconds between curve points")
    parser.add_argument("--curve_tokens", type=int, default=16_384, help="(c) validation tokens per curve point")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--e_tokens", type=int, default=2048, help="(e) tokens per step, in rows of 128")
    parser.add_argument("--e_rounds", type=int, default=2, help="(e) alternating processes per side")
    parser.add_argument("--b_worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--e_worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--e_side", choices=["fused", "logits"], default="fused", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.b_worker is not None:  # one (b) cell, in the fresh process started by end_to_end_in_subprocess
        print(json.dumps(bench_end_to_end(args.b_worker, args)))
        return
    if args.e_worker is not None:  # one (e) side, in the fresh process started by full_loss_in_subprocesses
        print(json.dumps(full_loss_step(args.e_worker, args.e_side, args)))
        return
    parts = set(args.parts) | ({"b"} if args.end_to_end else set())
    print_header(args)

    if "a" in parts:
        print(
            f"\n(a) output layer + loss, fwd+bwd, N={args.tokens}, d={args.hidden}, k={args.num_noise_samples} "
            f"shared, fp32, {torch.get_num_threads()} threads; min over repetitions (s/step)\n"
        )
        print("| vocab | full | nce | speed-up | target | met |")
        print("|---|---|---|---|---|---|")
        for vocab_size in sorted(args.vocab_sizes):  # 250k full last: it perturbs later timings
            r = bench_head(vocab_size, args)
            target = f">= {r['target']:.0f}x" if r["target"] else "-"
            met = "-" if not r["target"] else ("yes" if r["ratio"] >= r["target"] else "NO")
            reps = " (1 rep)" if r["full_reps"] == 1 else ""
            print(
                f"| {vocab_size:,} | {r['full']:.4f}{reps} | {r['nce']:.4f} | {r['ratio']:.1f}x | {target} | {met} |",
                flush=True,
            )

    if "b" in parts:
        print(
            f"\n(b) Trainer steps, 2-layer GPT-2 d=256, tied embeddings, adamw_torch_fused, fp32, "
            f"{args.tokens} tokens/step, k={args.num_noise_samples} shared; min over {args.steps} timed steps "
            f"after 1 warm-up (250k full: 1 timed step); one fresh process per vocabulary\n"
        )
        print("| vocab | full tok/s | nce tok/s | speed-up | target | met |")
        print("|---|---|---|---|---|---|")
        for vocab_size in sorted(args.vocab_sizes):
            r = end_to_end_in_subprocess(vocab_size, args)
            target = f">= {r['target']:.1f}x" if r["target"] else "-"
            met = "-" if not r["target"] else ("yes" if r["ratio"] >= r["target"] else "NO")
            print(
                f"| {vocab_size:,} | {args.tokens / r['full']:,.0f} | {args.tokens / r['nce']:,.0f} | "
                f"{r['ratio']:.1f}x | {target} | {met} |",
                flush=True,
            )

    if "e" in parts:
        print(
            f"\n(e) one loss_type=full training step (forward + backward), 2-layer GPT-2 d={args.hidden}, "
            f"{args.e_tokens} tokens, fp32: the fused exact loss vs F.cross_entropy of the full logits; peak RSS "
            f"over the built model, max over {args.e_rounds} alternated processes per side\n"
        )
        print("| vocab | logits MB | fused MB | less memory | loss difference | target | met |")
        print("|---|---|---|---|---|---|---|")
        for vocab_size in sorted(args.vocab_sizes):
            r = full_loss_in_subprocesses(vocab_size, args)
            ratio = r["logits"]["step_mb"] / max(r["fused"]["step_mb"], 1.0)
            difference = r["fused"]["loss"] - r["logits"]["loss"]
            target, ok = "-", "-"
            if vocab_size >= 250_000:
                target = f">= {TARGET_FUSED_MEMORY:.0f}x, loss within 1e-5"
                ok = "yes" if ratio >= TARGET_FUSED_MEMORY and abs(difference) <= 1e-5 else "NO"
            print(
                f"| {vocab_size:,} | {r['logits']['step_mb']:,.0f} | {r['fused']['step_mb']:,.0f} | {ratio:.1f}x | "
                f"{difference:+.1e} | {target} | {ok} |",
                flush=True,
            )

    if parts & {"c", "d"}:
        data = load_wikitext2(args)
        if data is None:
            print(f"\n(c)/(d) skipped: WikiText-2 not found at {WIKITEXT2} (train.txt, valid.txt)")
        else:
            results = {loss: bench_budget(loss, data, args) for loss in ("nce", "ranking", "full")}
            full_ppl = results["full"]["eval_perplexity"]
            print(
                f"\n(c) WikiText-2, word vocabulary {data['vocab_size']:,}, 2-layer GPT-2 d={args.c_hidden}, "
                f"{args.batch_size}x{args.block_size} tokens/step, k={args.num_noise_samples} shared, "
                f"{args.budget_seconds:.0f} s of training each; exact perplexity on "
                f"{results['full']['eval_tokens']:,} validation tokens\n"
            )
            print("| loss | steps | train tokens | valid ppl | ppl / full ppl | target |")
            print("|---|---|---|---|---|---|")
            for loss, r in results.items():
                target = "<= 1.10" if loss == "nce" else "-"
                tokens = r["steps"] * args.batch_size * args.block_size
                ratio = r["eval_perplexity"] / full_ppl
                print(f"| {loss} | {r['steps']:,} | {tokens:,} | {r['eval_perplexity']:.1f} | {ratio:.3f} | {target} |")
            curves = {
                f"{loss} ({r['steps']:,} steps)": ([s for s, _, _ in r["curve"]], [p for _, _, p in r["curve"]])
                for loss, r in results.items()
            }
            print(
                "\n"
                + save_plot(
                    "nce_wikitext2.png",
                    lines=curves,
                    yscale="log",
                    xlabel="training seconds",
                    ylabel=f"exact validation perplexity (first {args.curve_tokens:,} tokens)",
                    title=f"NCE LM on WikiText-2, {data['vocab_size']:,} words",
                )
            )
            print("\n(d) self-normalisation on the same validation tokens (log Z = 0 is perfectly normalised)\n")
            print("| loss | mean log Z | std log Z | fraction abs(log Z) > 1 |")
            print("|---|---|---|---|")
            for loss, r in results.items():
                if "eval_log_partition_mean" not in r:  # a softmax-trained model: no statistics reported
                    continue
                print(
                    f"| {loss} | {r['eval_log_partition_mean']:.3f} | {r['eval_log_partition_std']:.3f} | "
                    f"{r['eval_log_partition_outlier_fraction']:.3f} |"
                )
    print(f"\nlog(k) = {math.log(args.num_noise_samples):.2f}; shared CPU: ratios are noisy.")


if __name__ == "__main__":
    main()
