"""Speed of the NCE output layer against the full softmax, measured in one run.

    python bench/nce.py                                   # (a) output layer + loss, 10k/50k/250k
    python bench/nce.py --vocab-sizes 10000 50000         # skip the 250k full softmax (~12 GB)
    python bench/nce.py --vocab-sizes 10000 --end-to-end  # also (b): Trainer steps, tokens/s

(a) Output layer + loss alone, forward and backward: `full` is `F.linear` + `cross_entropy`
    (what GPT2LMHeadModel does, plus the bias); `nce` is `NCELMForCausalLM.sampled_token_losses`
    (one shared draw of k ids, one `[k, d]` gather, one `[N, d] x [d, k]` product, logsigmoid).
    N tokens, hidden d, fp32. Repetitions alternate full / nce and the minimum is reported
    (the most robust estimator on a shared machine). The 250k full softmax is timed once.
(b) Whole training steps through `transformers.Trainer` (2-layer GPT-2 backbone, hidden 256,
    tied embeddings, `optim="adamw_torch_fused"`), minimum step time -> tokens/s.

Targets (nce.md §6.3, 2-core CPU): (a) >= 15x at 10k, 50x at 50k, 100x at 250k; (b) >= 2x at
10k, 5x at 50k, 15x at 250k. Timings on a shared CPU are noisy: compare ratios, not seconds.
"""

import argparse
import math
import tempfile
import time

import torch
import torch.nn.functional as F

from custom_models.nce_lm import NCELMConfig, NCELMForCausalLM, noise_log_probs_from_counts

TARGETS_HEAD = {10_000: 15.0, 50_000: 50.0, 250_000: 100.0}
TARGETS_END_TO_END = {10_000: 2.0, 50_000: 5.0, 250_000: 15.0}


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=[10_000, 50_000, 250_000])
    parser.add_argument("--tokens", type=int, default=4096, help="tokens per step (N)")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size d for (a)")
    parser.add_argument("--num-noise-samples", type=int, default=256, help="k, shared per step")
    parser.add_argument("--repetitions", type=int, default=5, help="timed repetitions per cell in (a)")
    parser.add_argument("--end-to-end", action="store_true", help="also run (b) through Trainer")
    parser.add_argument("--steps", type=int, default=3, help="timed Trainer steps per cell in (b)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

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

    if args.end_to_end:
        print(
            f"\n(b) Trainer steps, 2-layer GPT-2 d=256, tied embeddings, adamw_torch_fused, "
            f"{args.tokens} tokens/step, k={args.num_noise_samples}; min step time\n"
        )
        print("| vocab | full tok/s | nce tok/s | speed-up | target | met |")
        print("|---|---|---|---|---|---|")
        for vocab_size in sorted(args.vocab_sizes):
            r = bench_end_to_end(vocab_size, args)
            target = f">= {r['target']:.0f}x" if r["target"] else "-"
            met = "-" if not r["target"] else ("yes" if r["ratio"] >= r["target"] else "NO")
            print(
                f"| {vocab_size:,} | {args.tokens / r['full']:,.0f} | {args.tokens / r['nce']:,.0f} | "
                f"{r['ratio']:.1f}x | {target} | {met} |",
                flush=True,
            )
    print(f"\nlog(k) = {math.log(args.num_noise_samples):.2f}; shared CPU: ratios are noisy, see nce.md §6.")


if __name__ == "__main__":
    main()
