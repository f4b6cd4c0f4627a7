"""One Transformer-XL training step per configuration, each in its own process, rounds alternated.

Shared by `bench/transfo_xl.py` part (d) and `bench/large_vocab.py` part (a). Method: every configuration
runs in a fresh interpreter (a 267,735-word full-softmax step leaves the allocator in a state that slows
later work in the same process); configurations alternate over `rounds`, so slow phases of a
shared machine hit all of them. Step = forward + backward (no optimizer) on one fixed batch of tokens
drawn from Zipf's law (p of rank r ∝ 1/r), as word frequencies are; the adaptive softmax relies on that
and it is also the noise distribution of `nce` / `ranking` (`set_noise_distribution`). Time is the
minimum over the steps after a warm-up step; peak memory is the process's peak RSS (`ru_maxrss`) minus its
RSS once the model is built, i.e. what the step itself allocates (activations, logits, gradients).
"""

import json
import subprocess
import sys

STEP_WORKER = """
import json, os, resource, sys, time
import torch
from custom_models.transfo_xl import TransformerXLConfig, TransformerXLForCausalLM

job = json.loads(sys.argv[1])
torch.set_num_threads(job["threads"])
vocab, (batch, length) = job["config"]["vocab_size"], job["shape"]
zipf = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)  # p(rank r) ∝ 1 / r
ids = torch.multinomial(zipf, batch * (length + 1), replacement=True,
                        generator=torch.Generator().manual_seed(job["seed"])).view(batch, length + 1)
torch.manual_seed(job["seed"])
model = TransformerXLForCausalLM(TransformerXLConfig(**job["config"])).train()
if job["activation_checkpointing"]:
    model.activation_checkpointing_enable()
if model.config.loss_type in ("nce", "ranking"):
    model.set_noise_distribution(zipf.log())
    model.sample_noise((1,))  # builds the alias table (once per distribution) before the RSS baseline
resident_mb = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
times, losses = [], []
for _ in range(job["steps"] + 1):  # the first step warms up
    start = time.perf_counter()
    loss = model(input_ids=ids[:, :-1], target_ids=ids[:, 1:]).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - start)
    losses.append(loss.item())
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT", json.dumps({"times": times[1:], "step_mb": peak_mb - resident_mb, "loss": losses[0],
                            "params": sum(p.numel() for p in model.parameters())}))
"""


def measure_steps(
    sides: dict[str, dict],
    *,
    shape: tuple[int, int],
    steps: int,
    rounds: int,
    seed: int,
    threads: int,
    checkpointed: frozenset[str] = frozenset(),
) -> dict[str, dict]:
    """`{name: TransformerXLConfig fields}` -> `{name: {"times": [s, ...], "step_mb", "loss", "params"}}`:
    every side in its own process per round, `steps` timed steps each; `step_mb` is the largest over rounds.
    `loss` is the first step's loss, the same batch and initial weights on every side (same seed). The sides
    named in `checkpointed` train with activation (gradient) checkpointing."""
    results = {name: {"times": [], "step_mb": 0.0} for name in sides}
    for _ in range(rounds):
        for name, config in sides.items():
            job = {"config": config, "shape": shape, "steps": steps, "seed": seed, "threads": threads}
            job["activation_checkpointing"] = name in checkpointed
            done = subprocess.run([sys.executable, "-c", STEP_WORKER, json.dumps(job)], capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                raise RuntimeError(f"{name} worker failed: {done.stderr[-2000:]}")
            result = json.loads(lines[-1][len("RESULT ") :])
            results[name]["times"] += result["times"]
            results[name]["step_mb"] = max(results[name]["step_mb"], result["step_mb"])
            results[name].update(loss=result["loss"], params=result["params"])
    return results
