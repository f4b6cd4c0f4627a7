"""Runs inside the transformers 4.34.1 side environment: writes the Transformer-XL reference fixtures.

    <4.34.1 python> tests/reference/transfo_xl_4x_outputs.py OUTPUT_DIR

`make_transfo_xl_fixtures.py` runs this file with the side environment's interpreter; it imports only the
standard library, torch, safetensors and transformers 4.x (never this repository, whose code needs 5.x).
Everything is seeded and run in float32 on CPU with one thread, so a second run gives the same numbers.

Two fixtures, each a folder of OUTPUT_DIR (their README.md, next to them, says what every tensor means):
- `reference/`: a tiny plain `TransfoXLLMHeadModel` (one softmax cluster), its full `state_dict`, the
  `save_pretrained` folder, and what it computes on three 8-token segments carrying memory, on one pass
  without memory, and with a memory that is never cut.
- `legacy/`: a tiny adaptive model in the layout of `transfo-xl/transfo-xl-wt103` (adaptive input and
  softmax, div_val 4, first projection untied, same_length, clamp_len) written as 4.x Hub folders were
  (`config.json`, legacy-format `pytorch_model.bin`, `vocab.pkl`), and its log-probabilities. The
  vocabulary is synthetic (generated words counted in a generated corpus), built by 4.x's rule.
"""

import collections
import hashlib
import json
import random
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import TransfoXLConfig, TransfoXLLMHeadModel

SEED = 0
BATCH, SEGMENT, SEGMENTS = 2, 8, 3
PLAIN = dict(
    vocab_size=50, cutoffs=[], div_val=1, adaptive=False, d_model=32, d_embed=32, n_head=2, d_head=16,
    d_inner=64, n_layer=2, mem_len=8, clamp_len=0, same_length=False, pre_lnorm=False, untie_r=True,
    dropout=0.1, dropatt=0.0, init_std=0.2, tie_word_embeddings=True,
)  # fmt: skip
WT103_LAYOUT = dict(
    vocab_size=1000, cutoffs=[100, 300, 600], div_val=4, adaptive=True, d_model=64, d_embed=64, n_head=4,
    d_head=16, d_inner=128, n_layer=2, mem_len=8, clamp_len=5, same_length=True, pre_lnorm=False,
    untie_r=True, tie_projs=[False, True, True, True], dropout=0.1, dropatt=0.0, init_std=0.2,
    proj_init_std=0.1, eos_token_id=0, tie_word_embeddings=True,
)  # fmt: skip
SYLLABLES = ["ka", "lo", "mi", "ren", "tu", "sa", "vel", "or", "pi", "dan", "e", "zo", "ni", "bar", "ith", "gu"]


def random_model(config: TransfoXLConfig) -> TransfoXLLMHeadModel:
    """4.x's own initialisation (init_std 0.2: peaked attention, so memory and positions matter), then every
    bias drawn from N(0, 0.1) and every LayerNorm gain from 1 + N(0, 0.1), which 4.x sets to 0 and ~1: a
    missing bias, a bias of the wrong cluster or a misplaced norm then changes the outputs."""
    torch.manual_seed(SEED)
    model = TransfoXLLMHeadModel(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".bias") or name == "crit.cluster_bias":
                param.copy_(0.1 * torch.randn_like(param))
            elif name.endswith("layer_norm.weight"):
                param.copy_(1 + 0.1 * torch.randn_like(param))
    return model


def empty_mems(config: TransfoXLConfig) -> list[torch.Tensor]:
    """No memory at all, as the original code starts (4.x's `mems=None` would attend to mem_len zeros)."""
    return [torch.zeros(0, BATCH, config.d_model)] * config.n_layer


def raw_logits(model: TransfoXLLMHeadModel, last_hidden: torch.Tensor) -> torch.Tensor:
    """The one-cluster output layer before its log-softmax, `h @ W.T + b` (4.x returns only log-probs)."""
    output_layer = model.crit.out_layers[0]
    return torch.nn.functional.linear(last_hidden, output_layer.weight, output_layer.bias)


@torch.no_grad()
def plain_segments(model: TransfoXLLMHeadModel, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Three segments in order, each given the mems the previous one returned, the first none."""
    mems, parts, memories = empty_mems(model.config), collections.defaultdict(list), {}
    for k in range(SEGMENTS):
        segment = ids[:, k * SEGMENT : (k + 1) * SEGMENT]
        out = model(segment, mems=mems, output_hidden_states=True)
        last_hidden = model.transformer(segment, mems=mems).last_hidden_state
        parts["logits"].append(raw_logits(model, last_hidden))
        parts["log_probs"].append(out.prediction_scores)
        parts["last_hidden"].append(last_hidden)
        for i, hidden in enumerate(out.hidden_states):
            parts[f"hidden_states_{i}"].append(hidden)
        parts["losses_labels_shifted_within_segment"].append(model(segment, mems=mems, labels=segment).losses)
        mems = out.mems
        memories.update({f"mems_after_segment_{k}_layer_{layer}": mem for layer, mem in enumerate(mems)})
    tensors = {name: torch.cat(values, dim=1) for name, values in parts.items()}  # segments side by side
    losses = tensors["losses_labels_shifted_within_segment"]  # [b, 3 * 7]: 4.x scores 7 of 8 per segment
    tensors["losses_labels_shifted_within_segment"] = losses.view(BATCH, SEGMENTS, SEGMENT - 1)
    return {**tensors, **memories}  # memories [mem_len, b, d]: 4.x keeps them sequence-first


@torch.no_grad()
def plain_full_pass(model: TransfoXLLMHeadModel, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """One pass over all tokens with no memory (mem_len 0, so 4.x creates none)."""
    model.reset_memory_length(0)
    out = model(ids, output_hidden_states=True)
    last_hidden = model.transformer(ids).last_hidden_state
    model.reset_memory_length(model.config.mem_len)
    return {
        "logits": raw_logits(model, last_hidden),
        **{f"hidden_states_{i}": h for i, h in enumerate(out.hidden_states)},
    }


def write_plain(folder: Path) -> dict[str, float]:
    """Writes `reference/`; returns its self-checks for meta.json."""
    config = TransfoXLConfig(**PLAIN)
    model = random_model(config)
    ids = torch.randint(0, config.vocab_size, (BATCH, SEGMENT * SEGMENTS), generator=torch.Generator().manual_seed(1))
    state = {name: tensor.clone().contiguous() for name, tensor in model.state_dict().items()}  # tied copy too
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    model.save_pretrained(folder / "hf_checkpoint", safe_serialization=True)  # without the tied copy, as 4.x
    save_file({"input_ids": ids}, str(folder / "input_ids.safetensors"))
    segments = plain_segments(model, ids)
    save_file(segments, str(folder / "segments_with_mems.safetensors"))
    full = plain_full_pass(model, ids)
    save_file(full, str(folder / "full_pass_no_mem.safetensors"))
    model.reset_memory_length(SEGMENT * SEGMENTS)
    never_cut = plain_segments(model, ids)
    save_file({"logits": never_cut["logits"]}, str(folder / "segments_mem_len_24.safetensors"))
    reloaded = plain_segments(TransfoXLLMHeadModel.from_pretrained(folder / "hf_checkpoint").eval(), ids)
    return {
        "hf_checkpoint reloaded by 4.34.1 vs segments_with_mems, logits (max abs diff)": max_diff(
            reloaded["logits"], segments["logits"]
        ),
        "segments with mem_len=24 vs full pass without memory, logits (max abs diff)": max_diff(
            never_cut["logits"], full["logits"]
        ),
        "segments with mem_len=8 vs full pass, segments 2-3 (memory cut: must differ)": max_diff(
            segments["logits"][:, SEGMENT:], full["logits"][:, SEGMENT:]
        ),
    }


def synthetic_corpus(n_words: int) -> list[str]:
    """A shuffled stream of `n_words` distinct tokens: generated words (every fifth capitalised), `<unk>`,
    `,` and `.`; the token of rank r occurs 1 + 400 // (r + 1) times, a Zipf-like law as in real text."""
    rng = random.Random(SEED)
    words, seen = [",", ".", "<unk>"], {",", ".", "<unk>"}
    while len(words) < n_words:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
        word = word.capitalize() if len(words) % 5 == 0 else word
        if word not in seen:
            words.append(word)
            seen.add(word)
    stream = [word for rank, word in enumerate(words) for _ in range(1 + 400 // (rank + 1))]
    rng.shuffle(stream)
    return stream


def legacy_vocab(stream: list[str]) -> dict:
    """`Vocab.__dict__` as 4.x's conversion pickled wt103's: `<eos>` first, then the words by descending
    count (`Counter.most_common`, ties in order of first occurrence), as `TransfoXLTokenizer.build_vocab`."""
    counter = collections.Counter(stream)
    idx2sym = ["<eos>"] + [word for word, _ in counter.most_common()]
    return {
        "counter": counter, "special": ["<eos>"], "min_freq": 0, "max_size": None, "lower_case": False,
        "delimiter": None, "vocab_file": None, "idx2sym": idx2sym,
        "sym2idx": collections.OrderedDict((word, i) for i, word in enumerate(idx2sym)), "eos_idx": 0,
    }  # fmt: skip


def token_ids(text: str, sym2idx: dict[str, int]) -> list[int]:
    """The 4.x protocol on pre-tokenised text: split on whitespace, unknown words to `<unk>`, no `<eos>`."""
    return [sym2idx.get(word, sym2idx["<unk>"]) for word in text.split()]


def tokenizer_cases(stream: list[str], sym2idx: dict[str, int]) -> list[dict]:
    """Lines of the corpus, then lines with stray whitespace, unknown and case-changed words."""
    lines = [" ".join(stream[start : start + 12]) for start in range(SEGMENT * SEGMENTS, 120, 12)]
    lowercase = [word for word in sym2idx if word.isalpha() and word.islower()]
    unknown = next(w for w in ("".join(p) for p in zip(SYLLABLES, reversed(SYLLABLES))) if w not in sym2idx)
    lines += [
        " ".join(stream[: SEGMENT * SEGMENTS]),
        f" {lowercase[0]}  {lowercase[1]} . \t{lowercase[2]} ",
        f"{lowercase[0].upper()} {lowercase[0].capitalize()} {lowercase[0]} <unk> {unknown} ,",
    ]
    return [{"text": line, "ids": token_ids(line, sym2idx)} for line in lines]


@torch.no_grad()
def adaptive_log_probs(model: TransfoXLLMHeadModel, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Three segments carrying memory (the first none): log-probabilities and the losses with labels."""
    mems, log_probs, losses = empty_mems(model.config), [], []
    for k in range(SEGMENTS):
        segment = ids[:, k * SEGMENT : (k + 1) * SEGMENT]
        losses.append(model(segment, mems=mems, labels=segment).loss)
        out = model(segment, mems=mems)
        log_probs.append(out.prediction_scores)
        mems = out.mems
    log_probs = torch.cat(log_probs, dim=1)
    nll = -log_probs[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    return {"log_probs": log_probs, "nll_next_token": nll, "loss_labels_within_segment": torch.stack(losses)}


def write_legacy(folder: Path) -> dict[str, float]:
    """Writes `legacy/`; returns its self-checks for meta.json."""
    config = TransfoXLConfig(**WT103_LAYOUT)
    model = random_model(config)
    checkpoint = folder / "legacy_checkpoint"
    checkpoint.mkdir()
    config.to_json_file(checkpoint / "config.json")
    torch.save(model.state_dict(), checkpoint / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    stream = synthetic_corpus(config.vocab_size - 1)
    vocab = legacy_vocab(stream)
    torch.save(vocab, checkpoint / "vocab.pkl", _use_new_zipfile_serialization=False)
    (folder / "tokenizer_cases.json").write_text(json.dumps(tokenizer_cases(stream, vocab["sym2idx"]), indent=1))
    # Row 0: six random ids from each softmax cluster, shuffled; row 1: the corpus's first 24 tokens.
    generator = torch.Generator().manual_seed(1)
    bounds = [0, *config.cutoffs, config.vocab_size]
    spread = torch.cat([torch.randint(lo, hi, (6,), generator=generator) for lo, hi in zip(bounds, bounds[1:])])
    text = torch.tensor(token_ids(" ".join(stream[: SEGMENT * SEGMENTS]), vocab["sym2idx"]))
    ids = torch.stack([spread[torch.randperm(len(spread), generator=generator)], text])
    save_file({"input_ids": ids}, str(folder / "input_ids.safetensors"))
    reference = adaptive_log_probs(model, ids)
    save_file(reference, str(folder / "reference.safetensors"))
    reloaded = adaptive_log_probs(TransfoXLLMHeadModel.from_pretrained(checkpoint).eval(), ids)
    return {
        "legacy_checkpoint reloaded by 4.34.1 vs reference, log_probs (max abs diff)": max_diff(
            reloaded["log_probs"], reference["log_probs"]
        ),
        **switched_off(model, ids, reference["log_probs"]),
    }


def switched_off(model: TransfoXLLMHeadModel, ids: torch.Tensor, log_probs: torch.Tensor) -> dict[str, float]:
    """How far 4.34.1's own log-probabilities move when clamp_len or same_length is switched off: far above
    the tests' 1e-4, so the fixture fails an implementation without them (clamp_len 5 < mem_len 8, as
    wt103's 1000 < 1600: with a window no longer than clamp_len, clamping would change nothing)."""
    changes = {}
    for attribute, value in (("clamp_len", 0), ("same_length", False)):
        kept = getattr(model.transformer, attribute)
        setattr(model.transformer, attribute, value)
        moved = max_diff(adaptive_log_probs(model, ids)["log_probs"], log_probs)
        changes[f"{attribute}={value} instead of {kept}, log_probs (max abs change)"] = moved
        setattr(model.transformer, attribute, kept)
    return changes


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest absolute elementwise difference."""
    return (a - b).abs().max().item()


def write_meta(folder: Path, config: dict, checks: dict[str, float]) -> None:
    """meta.json: versions, seed, config, self-checks, and the sha256 of every other file of `folder`."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "meta.json")
    meta = {
        "generator": "tests/reference/make_transfo_xl_fixtures.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "seed": SEED,
        "batch": BATCH,
        "segment_len": SEGMENT,
        "segments": SEGMENTS,
        "config": config,
        "checks": checks,
        "sha256": {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def main(output_dir: Path) -> None:
    """Writes `output_dir/reference` and `output_dir/legacy`, each with its meta.json; both must not exist."""
    torch.set_num_threads(1)  # one reduction order
    for name, config, write in (("reference", PLAIN, write_plain), ("legacy", WT103_LAYOUT, write_legacy)):
        folder = output_dir / name
        folder.mkdir(parents=True)
        write_meta(folder, config, write(folder))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
