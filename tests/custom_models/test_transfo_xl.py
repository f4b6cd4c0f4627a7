"""Transformer-XL: memory semantics, reference match (transformers 4.x fixture), Hub round trip, generation.

All runs: tiny models (d_model 32), eval mode, float32, empty initial memory, unless a test says otherwise.
Tolerances: float32 sums of a few dozen products differ by ~1e-6 between a segmented and a full pass
(different reduction orders / matmul blocking), so 1e-5 separates rounding from bugs, which move logits
by 0.1-3 (see the sensitivity table in the fixture's meta.json).
"""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForCausalLM

from custom_models.transfo_xl import TransformerXLConfig, TransformerXLForCausalLM, TransformerXLModel
from custom_models.transfo_xl.modeling_transfo_xl import causal_memory_mask, relative_position_index
from tests.tiny_models import transfo_xl_config

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "transfo_xl" / "reference"  # see its README
VOCAB = 50
ATOL = 1e-5  # float32 rounding between equivalent computations is ~1e-6 here


def tiny_config(**overrides) -> TransformerXLConfig:
    # init_std 0.2: peaked attention, so the memory and position terms matter
    fields = dict(vocab_size=VOCAB, mem_len=64, dropout=0.1, dropatt=0.1, init_std=0.2)
    return transfo_xl_config(**{**fields, **overrides})


def tiny_model(seed: int = 0, **overrides) -> TransformerXLForCausalLM:
    """A random model in eval mode whose biases and LayerNorm gains are non-trivial too (a missing bias
    or a misplaced norm would otherwise be invisible)."""
    torch.manual_seed(seed)
    model = TransformerXLForCausalLM(tiny_config(**overrides)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layer_norm.weight" in name:
                param.copy_(1 + 0.1 * torch.randn_like(param))
            elif name.endswith("bias") and "r_" not in name.rsplit(".", 1)[-1]:
                param.copy_(0.1 * torch.randn_like(param))
    return model


def token_ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def run_segments(model, ids: torch.Tensor, lengths: list[int], **kwargs):
    """Feeds `ids` segment by segment, carrying mems; returns (logits [b, T, V], outputs per segment)."""
    assert sum(lengths) == ids.shape[1]
    mems, outputs, start = None, [], 0
    for length in lengths:
        out = model(ids[:, start : start + length], mems=mems, **kwargs)
        mems, start = out.mems, start + length
        outputs.append(out)
    return torch.cat([o.logits for o in outputs], dim=1), outputs


# --------------------------------------------------------------------------------------------------
# Trick functions: worked examples from the docstrings
# --------------------------------------------------------------------------------------------------


def test_relative_position_index_worked_example():
    assert relative_position_index(q_len=2, k_len=4, n_pos=4).tolist() == [[2, 1, 0, 0], [3, 2, 1, 0]]
    assert relative_position_index(q_len=2, k_len=4, n_pos=2).tolist() == [[1, 1, 0, 0], [1, 1, 1, 0]]


def test_causal_memory_mask_hides_future_and_keys_outside_window():
    # q_len=2 after 2 memory positions: query 0 is key position 2, query 1 is key position 3.
    assert causal_memory_mask(q_len=2, k_len=4).tolist() == [[False, False, False, True], [False] * 4]
    assert causal_memory_mask(q_len=2, k_len=4, window=2).tolist() == [
        [True, False, False, True],
        [True, True, False, False],
    ]


# --------------------------------------------------------------------------------------------------
# 1-2. Segments with memory == one full pass
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_layer", [1, 2, 3])
@pytest.mark.parametrize("clamp_len", [0, 3])
@pytest.mark.parametrize("pre_lnorm", [False, True])
@pytest.mark.parametrize("untie_r", [True, False])
def test_segments_with_memory_match_full_pass(n_layer, clamp_len, pre_lnorm, untie_r):
    model = tiny_model(n_layer=n_layer, clamp_len=clamp_len, pre_lnorm=pre_lnorm, untie_r=untie_r, mem_len=16)
    ids = token_ids(2, 16)
    segmented, _ = run_segments(model, ids, [5, 1, 7, 3])
    with torch.no_grad():
        full = model(ids).logits
    torch.testing.assert_close(segmented, full, atol=ATOL, rtol=0)


@torch.no_grad()
def windowed_full_pass(model: TransformerXLForCausalLM, ids: torch.Tensor, window: int) -> torch.Tensor:
    """Reference for same_length: one pass over all tokens in which every layer lets position i see
    keys i-window+1..i only. The mask is built here with triu/tril, independently of the model's
    mask helper, and fed to the model's own layers."""
    transformer, length = model.transformer, ids.shape[1]
    full = torch.ones(length, length, dtype=torch.bool)
    mask = full.triu(1) | full.tril(-window)
    clamp_len = model.config.clamp_len
    n_pos = length if clamp_len == 0 else min(length, clamp_len + 1)
    pos_emb = transformer.pos_emb(n_pos, clamp_len=clamp_len, device=ids.device)
    shared = None if transformer.r_w_bias is None else (transformer.r_w_bias, transformer.r_r_bias)
    hidden = transformer.word_emb(ids) * transformer.word_emb.emb_scale
    for layer in transformer.layers:
        hidden, _ = layer(hidden, None, pos_emb, mask, shared_biases=shared)
    return model.crit.out_layers[0](hidden)


@pytest.mark.parametrize("window", [1, 3, 6, 20])
@pytest.mark.parametrize(("clamp_len", "pre_lnorm", "untie_r"), [(0, False, True), (2, True, False)])
def test_same_length_segments_match_windowed_full_pass(window, clamp_len, pre_lnorm, untie_r):
    model = tiny_model(same_length=True, mem_len=window, clamp_len=clamp_len, pre_lnorm=pre_lnorm, untie_r=untie_r)
    ids = token_ids(2, 16)
    segmented, _ = run_segments(model, ids, [4, 1, 6, 5])
    reference = windowed_full_pass(model, ids, window)
    torch.testing.assert_close(segmented, reference, atol=ATOL, rtol=0)
    if window < 16:  # the window really cuts context: plain causal attention gives other logits
        with torch.no_grad():
            model.config.same_length = False
            assert (model(ids).logits - reference).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------------
# 3. Memory semantics
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_memory_carries_no_gradient_into_earlier_segments():
    model = tiny_model(mem_len=8)
    ids = token_ids(2, 12)
    embeds = model.get_input_embeddings()(ids[:, :6]).detach().requires_grad_(True)
    first = model(inputs_embeds=embeds)
    assert all(not m.requires_grad and m.grad_fn is None for m in first.mems)

    model(ids[:, 6:], mems=first.mems, labels=ids[:, 6:]).loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert embeds.grad is None  # nothing reached the previous segment's inputs

    model.zero_grad()
    detached = tuple(m.detach().clone() for m in first.mems)
    model(ids[:, 6:], mems=detached, labels=ids[:, 6:]).loss.backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, grads[name], atol=0, rtol=0, msg=name)


def test_mems_keep_exactly_the_last_mem_len_layer_inputs():
    model = tiny_model(mem_len=5)
    ids = token_ids(2, 13)
    _, outputs = run_segments(model, ids, [3, 6, 4], output_hidden_states=True)
    inputs_so_far = [torch.empty(2, 0, 32)] * model.config.n_layer
    for out in outputs:
        # hidden_states[l] is the input of layer l; memory starts empty, so the first is 3 long, not 5.
        inputs_so_far = [torch.cat([p, h], dim=1) for p, h in zip(inputs_so_far, out.hidden_states[:-1])]
        for layer, mem in enumerate(out.mems):
            expected = inputs_so_far[layer][:, -5:]
            assert mem.shape == expected.shape
            torch.testing.assert_close(mem, expected, atol=0, rtol=0)


def test_mems_of_full_pass_are_last_mem_len_hidden_states():
    model = tiny_model(mem_len=5)
    with torch.no_grad():
        out = model(token_ids(2, 12), output_hidden_states=True)
    for layer, mem in enumerate(out.mems):
        torch.testing.assert_close(mem, out.hidden_states[layer][:, -5:], atol=0, rtol=0)


@pytest.mark.slow
def test_batch_rows_are_independent():
    model = tiny_model(mem_len=6)
    ids = token_ids(3, 14)
    together, _ = run_segments(model, ids, [5, 4, 5])
    for row in range(3):
        alone, _ = run_segments(model, ids[row : row + 1], [5, 4, 5])
        torch.testing.assert_close(together[row : row + 1], alone, atol=ATOL, rtol=0)


@pytest.mark.parametrize("changed", [0, 5, 9])
def test_changing_a_token_only_affects_later_logits_across_segments(changed):
    model = tiny_model(mem_len=6)
    ids = token_ids(2, 14)
    other = ids.clone()
    other[:, changed] = (other[:, changed] + 1) % VOCAB
    before, _ = run_segments(model, ids, [5, 4, 5])
    after, _ = run_segments(model, other, [5, 4, 5])
    torch.testing.assert_close(before[:, :changed], after[:, :changed], atol=0, rtol=0)
    assert (before[:, changed:] - after[:, changed:]).abs().max() > 1e-3


def test_output_attentions_path_matches_sdpa_path():
    model = tiny_model(mem_len=6, clamp_len=3)
    ids = token_ids(2, 10)
    fast, _ = run_segments(model, ids, [4, 6])
    explicit, outputs = run_segments(model, ids, [4, 6], output_attentions=True)
    torch.testing.assert_close(fast, explicit, atol=ATOL, rtol=0)
    probs = outputs[1].attentions[0]  # [b, h, q_len=6, k_len=4+6]
    assert probs.shape == (2, 2, 6, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 6), atol=1e-6, rtol=0)
    assert probs[..., 0, 5:].abs().max() == 0  # query 0 (key position 4) never sees keys 5..9


def test_attention_mask_with_padding_is_rejected():
    model = tiny_model()
    ids = token_ids(1, 4)
    with torch.no_grad():
        model(ids, attention_mask=torch.ones_like(ids))
        with pytest.raises(ValueError, match="attention_mask"):
            model(ids, attention_mask=torch.tensor([[0, 1, 1, 1]]))


def test_target_ids_score_every_stream_token_once():
    """Stream convention: inputs x[0:T-1], targets x[1:T] split into segments; the token-weighted mean
    over segments equals the causal-LM loss of one pass with `labels` (which scores x[1:T])."""
    model = tiny_model(mem_len=16)
    ids = token_ids(2, 16)
    inputs, targets = ids[:, :-1], ids[:, 1:]
    total, count, mems, start = 0.0, 0, None, 0
    with torch.no_grad():
        for length in [4, 1, 6, 4]:
            out = model(inputs[:, start : start + length], mems=mems, target_ids=targets[:, start : start + length])
            n_tokens = targets[:, start : start + length].numel()
            total, count = total + out.loss * n_tokens, count + n_tokens
            mems, start = out.mems, start + length
        full = model(ids, labels=ids).loss
    torch.testing.assert_close(total / count, full, atol=ATOL, rtol=0)


def test_labels_and_target_ids_together_are_rejected():
    model = tiny_model()
    ids = token_ids(1, 4)
    with pytest.raises(ValueError, match="not both"):
        model(ids, labels=ids, target_ids=ids)


def test_shared_biases_live_on_the_model_when_untie_r_is_false():
    keys = set(tiny_model(untie_r=False).state_dict())
    assert {"transformer.r_w_bias", "transformer.r_r_bias"} <= keys
    assert not any("dec_attn.r_w_bias" in k or "dec_attn.r_r_bias" in k for k in keys)


# --------------------------------------------------------------------------------------------------
# 4. Reference match (transformers 4.34.1 TransfoXLLMHeadModel fixture)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_model() -> TransformerXLForCausalLM:
    return TransformerXLForCausalLM.from_pretrained(FIXTURE / "hf_checkpoint").eval()


REF_ATOL = 1e-4  # the fixture README's bound; we measure ~2e-6


def test_fixture_checkpoint_restores_tied_output_weight(reference_model):
    output_weight = reference_model.crit.out_layers[0].weight
    assert output_weight is reference_model.transformer.word_emb.emb_layers[0].weight
    full_state = load_file(FIXTURE / "model.safetensors")
    torch.testing.assert_close(output_weight, full_state["crit.out_layers.0.weight"], atol=0, rtol=0)
    assert reference_model.config.model_type == "transformer-xl"


def test_fixture_full_state_dict_has_identical_names(reference_model):
    full_state = load_file(FIXTURE / "model.safetensors")
    model = TransformerXLForCausalLM(reference_model.config).eval()
    assert set(model.state_dict()) == set(full_state)
    model.load_state_dict(full_state, strict=True)
    ids = load_file(FIXTURE / "input_ids.safetensors")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference_model(ids).logits, atol=0, rtol=0)


def test_fixture_segments_with_memory(reference_model):
    ids = load_file(FIXTURE / "input_ids.safetensors")["input_ids"]
    ref = load_file(FIXTURE / "segments_with_mems.safetensors")
    logits, outputs = run_segments(reference_model, ids, [8, 8, 8], output_hidden_states=True)
    torch.testing.assert_close(logits, ref["logits"], atol=REF_ATOL, rtol=0)
    torch.testing.assert_close(torch.log_softmax(logits, -1), ref["log_probs"], atol=REF_ATOL, rtol=0)
    hidden = [torch.cat([o.hidden_states[i] for o in outputs], dim=1) for i in range(3)]
    for i in range(3):
        torch.testing.assert_close(hidden[i], ref[f"hidden_states_{i}"], atol=REF_ATOL, rtol=0)
    torch.testing.assert_close(hidden[2], ref["last_hidden"], atol=REF_ATOL, rtol=0)
    for segment, out in enumerate(outputs):
        for layer, mem in enumerate(out.mems):
            expected = ref[f"mems_after_segment_{segment}_layer_{layer}"].transpose(0, 1)  # fixture: [len, b, d]
            torch.testing.assert_close(mem, expected, atol=REF_ATOL, rtol=0)


def test_fixture_labels_shifted_within_segment_loss(reference_model):
    ids = load_file(FIXTURE / "input_ids.safetensors")["input_ids"]
    per_token = load_file(FIXTURE / "segments_with_mems.safetensors")["losses_labels_shifted_within_segment"]
    mems = None
    with torch.no_grad():
        for segment in range(3):
            chunk = ids[:, 8 * segment : 8 * segment + 8]
            out = reference_model(chunk, mems=mems, labels=chunk)
            torch.testing.assert_close(out.loss, per_token[:, segment].mean(), atol=REF_ATOL, rtol=0)
            mems = out.mems


def test_fixture_segments_with_mem_len_24():
    model = TransformerXLForCausalLM.from_pretrained(FIXTURE / "hf_checkpoint", mem_len=24).eval()
    ids = load_file(FIXTURE / "input_ids.safetensors")["input_ids"]
    ref = load_file(FIXTURE / "segments_mem_len_24.safetensors")
    logits, _ = run_segments(model, ids, [8, 8, 8])
    torch.testing.assert_close(logits, ref["logits"], atol=REF_ATOL, rtol=0)


def test_fixture_full_pass_without_memory(reference_model):
    ids = load_file(FIXTURE / "input_ids.safetensors")["input_ids"]
    ref = load_file(FIXTURE / "full_pass_no_mem.safetensors")
    with torch.no_grad():
        out = reference_model(ids, output_hidden_states=True)
    torch.testing.assert_close(out.logits, ref["logits"], atol=REF_ATOL, rtol=0)
    for i in range(3):
        torch.testing.assert_close(out.hidden_states[i], ref[f"hidden_states_{i}"], atol=REF_ATOL, rtol=0)


# --------------------------------------------------------------------------------------------------
# 5. Invalid configurations
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "extra"),
    [
        ("mem_len", -1, {}),
        ("clamp_len", -2, {}),
        ("same_length", True, {"mem_len": 0}),
        ("adaptive", True, {}),
        ("adaptive", False, {"cutoffs": [10, 20]}),
        ("cutoffs", [20, 10], {"adaptive": True}),
        ("cutoffs", [10, VOCAB], {"adaptive": True}),
        ("div_val", 0, {}),
        ("div_val", 64, {"cutoffs": [10], "adaptive": True}),
        ("tie_projs", [False], {"cutoffs": [10], "adaptive": True}),
        ("attn_type", 1, {}),
        ("sample_softmax", 100, {}),
        ("n_head", 0, {}),
        ("dropout", 1.0, {}),
    ],
)
def test_invalid_config_raises_value_error_naming_field(field, value, extra):
    with pytest.raises(ValueError, match=f"{field}="):
        tiny_config(**{field: value, **extra})


def test_legacy_config_loads_under_our_model_type():
    config = TransformerXLConfig.from_pretrained(FIXTURE / "hf_checkpoint")
    assert config.model_type == "transformer-xl"
    assert config.architectures == ["TransformerXLForCausalLM"]
    assert (config.mem_len, config.n_layer, config.untie_r) == (8, 2, True)


# --------------------------------------------------------------------------------------------------
# 6. Hub round trip in a clean process
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_save_and_load_in_clean_process_gives_identical_outputs(tmp_path, forward_in_clean_process):
    model = tiny_model(untie_r=False, pre_lnorm=True, clamp_len=4)
    model.save_pretrained(tmp_path / "model")
    ids = token_ids(2, 7)
    with torch.no_grad():
        out = model(ids)
        base_hidden = model.transformer(ids).last_hidden_state
    logits = forward_in_clean_process(tmp_path / "model", "AutoModelForCausalLM", {"input_ids": ids})
    torch.testing.assert_close(logits, out.logits, atol=0, rtol=0)
    hidden = forward_in_clean_process(tmp_path / "model", "AutoModel", {"input_ids": ids}, "last_hidden_state")
    torch.testing.assert_close(hidden, base_hidden, atol=0, rtol=0)


def test_auto_classes_resolve_to_our_classes(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path)) is TransformerXLForCausalLM
    assert type(AutoModel.from_pretrained(tmp_path)) is TransformerXLModel


# --------------------------------------------------------------------------------------------------
# 7. Generation
# --------------------------------------------------------------------------------------------------


def test_generate_with_memory_matches_greedy_full_recomputation():
    model = tiny_model(mem_len=16, init_std=0.5)
    prompt = token_ids(2, 5)
    lengths = []
    hook = model.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    with torch.no_grad():
        generated = model.generate(prompt, max_new_tokens=8, do_sample=False)
    hook.remove()

    expected = prompt
    with torch.no_grad():
        for _ in range(8):
            next_token = model(expected).logits[:, -1].argmax(-1, keepdim=True)
            expected = torch.cat([expected, next_token], dim=1)
    assert torch.equal(generated, expected)
    assert lengths == [5] + [1] * 7  # prompt once, then only the newest token


@torch.no_grad()
def beam_search_by_full_recomputation(model, prompt: torch.Tensor, *, num_beams: int, steps: int) -> torch.Tensor:
    """Beam search with no memory and no eos: every step runs the whole of each beam through the model.
    prompt `[t]` -> the beam with the highest summed log-probability, `[t + steps]`."""
    beams, scores = prompt.unsqueeze(0), torch.zeros(1)  # [1, t]: one beam until the first expansion
    for _ in range(steps):
        log_probs = model(beams).logits[:, -1].float().log_softmax(-1)  # [beams, V]
        scores, flat = (scores[:, None] + log_probs).flatten().topk(num_beams)  # best continuations of all beams
        beams = torch.cat([beams[flat // VOCAB], (flat % VOCAB)[:, None]], dim=1)
    return beams[scores.argmax()]


@pytest.mark.parametrize("seed", [1, 2])  # seeds whose beams reorder enough that a stale memory changes them
def test_beam_search_with_memory_matches_beam_search_by_full_recomputation(seed):
    # Beams are reordered every step, so a memory not reordered with them (or reordered wrongly) scores the
    # continuations against another beam's history and changes the sequences.
    model = tiny_model(seed, mem_len=16, init_std=0.5)
    prompt = token_ids(2, 4, seed=seed + 1)
    lengths = []
    hook = model.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    with torch.no_grad():
        generated = model.generate(prompt, max_new_tokens=5, num_beams=3, do_sample=False)
    hook.remove()
    assert lengths == [4] + [1] * 4  # the memory path: prompt once, then only the newest token of each beam
    for row, sequence in zip(prompt, generated, strict=True):
        assert torch.equal(sequence, beam_search_by_full_recomputation(model, row, num_beams=3, steps=5))


# --------------------------------------------------------------------------------------------------
# 8. bfloat16
# --------------------------------------------------------------------------------------------------


def test_bfloat16_forward_is_close_to_float32():
    model = tiny_model(mem_len=8, init_std=0.02)
    ids = token_ids(2, 12)
    reference, _ = run_segments(model, ids, [6, 6])
    model = model.to(torch.bfloat16)
    logits, outputs = run_segments(model, ids, [6, 6])
    assert logits.dtype == torch.bfloat16 and outputs[-1].mems[0].dtype == torch.bfloat16
    # bf16 keeps 8 mantissa bits (relative step 2^-8 ~ 0.4%); weights, activations and memory are all
    # rounded, over 2 layers, so allow a few percent of the logit scale.
    scale = reference.abs().max()
    assert (logits.float() - reference).abs().max() < 0.03 * scale


def test_legacy_state_dict_with_per_layer_copies_of_shared_biases_loads(tmp_path):
    """4.x with untie_r=False lists the shared u/v again under every layer; those copies are ignored."""
    model = tiny_model(untie_r=False)
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    for layer in range(model.config.n_layer):
        for name in ("r_w_bias", "r_r_bias"):
            state[f"transformer.layers.{layer}.dec_attn.{name}"] = state[f"transformer.{name}"].clone()
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded = TransformerXLForCausalLM.from_pretrained(tmp_path).eval()
    ids = token_ids(2, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=0, rtol=0)


# --------------------------------------------------------------------------------------------------
# Gradient checkpointing
# --------------------------------------------------------------------------------------------------


def two_segment_gradients(model: TransformerXLForCausalLM, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of the summed loss of two segments, the second attending to the first's memory; training
    mode, so dropout is on and must be replayed identically by the recomputation."""
    model.train().zero_grad()
    torch.manual_seed(3)
    first = model(ids[:, :6], labels=ids[:, :6])
    second = model(ids[:, 6:], mems=first.mems, labels=ids[:, 6:])
    (first.loss + second.loss).backward()
    return {name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None}


@pytest.mark.parametrize("untie_r", [True, False])  # per-layer biases, or the model's pair passed into each layer
def test_gradient_checkpointing_gives_the_same_gradients(untie_r):
    model = tiny_model(untie_r=untie_r)
    ids = token_ids(2, 12)
    expected = two_segment_gradients(model, ids)
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.transformer.layers)
    got = two_segment_gradients(model, ids)
    assert got.keys() == expected.keys()
    for name, grad in expected.items():  # the same float32 operations replayed: equal up to 1e-6 at most
        torch.testing.assert_close(got[name], grad, atol=1e-6, rtol=1e-6, msg=name)


def bytes_saved_for_backward(model: TransformerXLForCausalLM, ids: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps between one segment's forward and its backward (the activations
    the training step holds at its peak; parameters, which are kept anyway, not counted)."""
    parameters = {param.data_ptr() for param in model.parameters()}
    saved = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.data_ptr() not in parameters:
            saved.append(tensor.numel() * tensor.element_size())
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(ids, labels=ids).loss
    loss.backward()
    return sum(saved)


def test_gradient_checkpointing_keeps_less_for_backward():
    """Four layers, 64 positions: without checkpointing every layer's attention scores and feed-forward
    activations are kept; with it, only each layer's inputs (and the output layer's activations)."""
    model = tiny_model(n_layer=4, vocab_size=VOCAB)
    ids = token_ids(2, 64)
    plain = bytes_saved_for_backward(model, ids)
    model.activation_checkpointing_enable()
    checkpointed = bytes_saved_for_backward(model, ids)
    assert checkpointed < 0.5 * plain, (checkpointed, plain)
