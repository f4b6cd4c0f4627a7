"""Transformer-XL 4.x checkpoints at WikiText-103 scale (267,735 words): load, convert, same log-probabilities.

    python bench/transfo_xl_legacy.py --install_reference

Claim: a transformers 4.x Transformer-XL folder with the exact `transfo-xl/transfo-xl-wt103` configuration
(18 layers, d_model = d_embed = 1024, 16 heads of 64, d_inner 4096, vocabulary 267,735, adaptive input and
softmax with cutoffs [20000, 40000, 200000], div_val 4, tie_projs [false, true, true, true], mem_len 1600,
clamp_len 1000, same_length, untie_r; a ~1.1 GB legacy `pytorch_model.bin` and a 267,735-word legacy
`vocab.pkl`) (1) loads with `TransformerXLForCausalLM.from_pretrained(folder)` and (2) converts with
`custom_models.transfo_xl.convert_legacy` into a folder that loads through `AutoModelForCausalLM(...,
trust_remote_code=True)` and `AutoTokenizer`; both compute the log-probabilities transformers 4.34.1 computes.

Target: max abs difference of the full log-probabilities [batch 2, 16, 267735] <= 1e-4 on both segments.
Also reported: wall time and peak RSS of loading and of converting (and the peak after the two forward
passes: safetensors is memory-mapped, so weights become resident as they are used), and the difference when
segment 2 is run WITHOUT its memory (shows the comparison can see the memory at this scale).

Method: the public wt103 weights are not reachable offline, so transformers 4.34.1 (a side venv built by
`--install_reference`: our torch release, then `transformers==4.34.1`) builds `TransfoXLLMHeadModel` with
that config and random weights (seed `--seed`), writes it as 4.x did (`torch.save(state_dict,
_use_new_zipfile_serialization=False)`, `config.save_pretrained`), writes a Vocab-like `vocab.pkl` (legacy
`torch.save` of a dict with a `Counter` and an `OrderedDict`), and runs two segments of 16 random tokens,
the first with EMPTY memories (`mems=[empty(0, batch, d_model)] * n_layer`; 4.x's `mems=None` would attend
to 1600 zero vectors), the second with the memories it returned. Those files live in `--cache_dir` (outside
the repository, reused by later runs). Each of our steps then runs in a fresh process of this interpreter,
so its peak RSS is its own; the AutoModel step never imports this repository's packages.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from _machine import machine_line

from custom_models.reference_env import CACHE_DIR, default_reference_python, ensure_reference

REFERENCE_VERSION = "4.34.1"
TARGET_ATOL = 1e-4
WT103 = {
    "vocab_size": 267735,
    "d_model": 1024,
    "d_embed": 1024,
    "n_head": 16,
    "d_head": 64,
    "d_inner": 4096,
    "n_layer": 18,
    "adaptive": True,
    "cutoffs": [20000, 40000, 200000],
    "div_val": 4,
    "tie_projs": [False, True, True, True],
    "mem_len": 1600,
    "clamp_len": 1000,
    "same_length": True,
    "untie_r": True,
    "pre_lnorm": False,
    "attn_type": 0,
    "dropout": 0.1,
    "dropatt": 0.0,
    "eos_token_id": 0,
}
#: The first words of the bench vocabulary; the rest are "w0", "w1", ... `<unk>` is an ordinary word, as in wt103.
FIRST_WORDS = ["<eos>", "the", ",", ".", "of", "<unk>"]

# Runs in the 4.34.1 interpreter: writes the 4.x folder and the reference log-probabilities into argv[1].
REFERENCE_SCRIPT = r"""
import collections, json, sys, time
from pathlib import Path
import torch, transformers
from safetensors.torch import save_file
from transformers import TransfoXLConfig, TransfoXLLMHeadModel
folder, cfg = Path(sys.argv[1]), json.loads(sys.argv[2])
torch.set_num_threads(cfg["threads"])
torch.manual_seed(cfg["seed"])
start = time.perf_counter()
config = TransfoXLConfig(**cfg["config"])
model = TransfoXLLMHeadModel(config).eval()
torch.save(model.state_dict(), folder / "pytorch_model.bin", _use_new_zipfile_serialization=False)
config.save_pretrained(folder)
words = cfg["first_words"] + [f"w{i}" for i in range(config.vocab_size - len(cfg["first_words"]))]
vocab = {
    "counter": collections.Counter({word: config.vocab_size - i for i, word in enumerate(words[1:])}),
    "special": ["<eos>"], "min_freq": 0, "max_size": None, "lower_case": False, "delimiter": None,
    "vocab_file": None, "idx2sym": words, "sym2idx": collections.OrderedDict((w, i) for i, w in enumerate(words)),
    "eos_idx": 0,
}
torch.save(vocab, folder / "vocab.pkl", _use_new_zipfile_serialization=False)
written = time.perf_counter() - start
seg = cfg["segment_len"]
generator = torch.Generator().manual_seed(cfg["seed"])
input_ids = torch.randint(config.vocab_size, (cfg["batch"], 2 * seg), generator=generator)
mems = [torch.empty(0, cfg["batch"], config.d_model)] * config.n_layer  # empty, not 4.x's mem_len zeros
log_probs = []
with torch.no_grad():
    for start_pos in (0, seg):
        out = model(input_ids[:, start_pos : start_pos + seg], mems=mems)
        log_probs.append(out.prediction_scores)
        mems = out.mems
save_file({"input_ids": input_ids, "log_probs": torch.cat(log_probs, dim=1).contiguous()},
          str(folder / "reference.safetensors"))
parameters = sum(p.numel() for p in model.parameters())
(folder / "reference.json").write_text(json.dumps({"write_s": written, "parameters": parameters,
                                                   "transformers": transformers.__version__, **cfg}))
"""


# ------------------------------------------------------------------------------------------------------
# Steps, each in its own process (`--step NAME`): they print one "RESULT <json>" line.
# ------------------------------------------------------------------------------------------------------


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def segment_diffs(model: torch.nn.Module, reference: dict[str, torch.Tensor], segment_len: int) -> dict:
    """Max abs difference to 4.34.1 per segment (memory carried, the first with none), and for segment 2
    run without memory."""
    input_ids, expected = reference["input_ids"], reference["log_probs"]
    diffs, mems = [], None
    with torch.no_grad():
        for start in (0, segment_len):
            out = model(input_ids[:, start : start + segment_len], mems=mems)
            diffs.append((out.logits - expected[:, start : start + segment_len]).abs().max().item())
            mems = out.mems
        no_memory = model(input_ids[:, segment_len:]).logits
    no_memory_diff = (no_memory - expected[:, segment_len:]).abs().max().item()
    return {"diffs": diffs, "no_memory_diff": no_memory_diff, "peak_rss_end_gb": peak_rss_gb()}


def step_load(args: argparse.Namespace) -> dict:
    """Our model straight from the 4.x folder."""
    from safetensors.torch import load_file

    from custom_models.transfo_xl import TransformerXLForCausalLM

    start = time.perf_counter()
    model = TransformerXLForCausalLM.from_pretrained(args.legacy_dir).eval()
    wall = time.perf_counter() - start
    peak = peak_rss_gb()
    reference = load_file(args.legacy_dir / "reference.safetensors")
    return {"wall_s": wall, "peak_rss_gb": peak, **segment_diffs(model, reference, args.segment_len)}


def step_convert(args: argparse.Namespace) -> dict:
    """The converter, 4.x folder -> 5.x folder."""
    from custom_models.transfo_xl.convert_legacy import convert

    start = time.perf_counter()
    convert(args.legacy_dir, args.converted_dir)
    return {"wall_s": time.perf_counter() - start, "peak_rss_gb": peak_rss_gb()}


def step_auto(args: argparse.Namespace) -> dict:
    """The converted folder through the Auto classes, with the code shipped in it (not this repository's)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.converted_dir, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.converted_dir, trust_remote_code=True)
    wall = time.perf_counter() - start
    peak = peak_rss_gb()
    if not type(model).__module__.startswith("transformers_modules") or "custom_models" in sys.modules:
        raise RuntimeError(f"the model came from {type(model).__module__}, not from the converted folder")
    words = [*FIRST_WORDS, "w0", "w267728", "unseen"]
    if len(tokenizer) != WT103["vocab_size"] or tokenizer(" ".join(words))["input_ids"] != [
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        267734,
        5,
    ]:
        raise RuntimeError("the converted tokenizer does not give the legacy ids")
    reference = load_file(args.legacy_dir / "reference.safetensors")
    return {"wall_s": wall, "peak_rss_gb": peak, **segment_diffs(model, reference, args.segment_len)}


STEPS = {"load": step_load, "convert": step_convert, "auto": step_auto}


def run_step(name: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--step",
        name,
        "--cache_dir",
        str(args.cache_dir),
        "--seed",
        str(args.seed),
        "--threads",
        str(args.threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=args.cache_dir)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"step {name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


# ------------------------------------------------------------------------------------------------------


def write_reference(args: argparse.Namespace) -> str | None:
    """Has 4.34.1 write the 4.x folder and its log-probs (unless cached); returns why it cannot, or None."""
    if (args.legacy_dir / "reference.json").is_file():
        return None
    why = ensure_reference(
        Path(args.reference_python),
        REFERENCE_VERSION,
        install=args.install_reference,
        check="from transformers import TransfoXLLMHeadModel",
    )
    if why:
        return why
    args.legacy_dir.mkdir(parents=True, exist_ok=True)
    cfg = {
        "config": WT103,
        "seed": args.seed,
        "threads": args.threads,
        "segment_len": args.segment_len,
        "batch": args.batch,
        "first_words": FIRST_WORDS,
    }
    print(f"transformers {REFERENCE_VERSION} writes {args.legacy_dir} ...", file=sys.stderr, flush=True)
    done = subprocess.run(
        [args.reference_python, "-c", REFERENCE_SCRIPT, str(args.legacy_dir), json.dumps(cfg)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        return f"the reference failed: {done.stderr.strip()[-2000:]}"
    return None


def print_results(args: argparse.Namespace) -> None:
    meta = json.loads((args.legacy_dir / "reference.json").read_text())
    if meta["segment_len"] != args.segment_len or meta["config"] != WT103:
        sys.exit(f"{args.legacy_dir} was written with other settings; delete it or pass another --cache_dir")
    if args.converted_dir.exists():
        shutil.rmtree(args.converted_dir)
    load, convert, auto = (run_step(name, args) for name in ("load", "convert", "auto"))
    size_gb = lambda path: path.stat().st_size / 1e9  # noqa: E731
    print(
        f"\n4.x folder written by transformers {meta['transformers']} in {meta['write_s']:.0f} s: "
        f"{meta['parameters']:,} parameters, pytorch_model.bin {size_gb(args.legacy_dir / 'pytorch_model.bin'):.2f} "
        f"GB, vocab.pkl {size_gb(args.legacy_dir / 'vocab.pkl') * 1e3:.1f} MB; converted model.safetensors "
        f"{size_gb(args.converted_dir / 'model.safetensors'):.2f} GB. Input: batch {args.batch}, two segments of "
        f"{args.segment_len} random ids, fp32, eval mode.\n"
    )
    print(
        "| step | wall s | peak RSS GB (step / + forward) | max abs diff seg 1 / seg 2 | seg 2 without memory | "
        "target | met |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in (
        ("`TransformerXLForCausalLM.from_pretrained(4.x folder)`", load),
        ("`convert_legacy` (4.x folder -> 5.x folder)", convert),
        ("converted folder, `AutoModelForCausalLM` + `AutoTokenizer`", auto),
    ):
        if "diffs" in r:
            met = "yes" if max(r["diffs"]) <= TARGET_ATOL else "NO"
            diffs = f"{r['diffs'][0]:.2e} / {r['diffs'][1]:.2e} | {r['no_memory_diff']:.2e} | <= {TARGET_ATOL:g}"
            diffs += f" | {met}"
        else:
            diffs = "- | - | - | -"
        rss = f"{r['peak_rss_gb']:.2f}" + (f" / {r['peak_rss_end_gb']:.2f}" if "peak_rss_end_gb" in r else "")
        print(f"| {name} | {r['wall_s']:.1f} | {rss} | {diffs} |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache_dir", type=Path, default=CACHE_DIR, help="where the ~1.1 GB files go")
    parser.add_argument(
        "--reference_python",
        default=str(default_reference_python(REFERENCE_VERSION)),
        help=f"interpreter with transformers {REFERENCE_VERSION}",
    )
    parser.add_argument(
        "--install_reference",
        action="store_true",
        help=f"build that venv: our torch release, then transformers=={REFERENCE_VERSION}",
    )
    parser.add_argument("--segment_len", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads, every process")
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)  # internal: one measured step
    args = parser.parse_args()
    args.legacy_dir = args.cache_dir / f"transfo-xl-wt103-random-seed{args.seed}"
    args.converted_dir = args.cache_dir / f"transfo-xl-wt103-random-seed{args.seed}-converted"
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.step:
        print("RESULT " + json.dumps(STEPS[args.step](args)), flush=True)
        return
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"# Transformer-XL 4.x checkpoint at wt103 scale\n\n{machine_line()}\n\n`{' '.join(sys.argv)}`")
    why = write_reference(args)
    if why:
        sys.exit(f"no reference: {why}")
    print_results(args)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
