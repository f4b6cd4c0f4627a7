"""Transformer-XL with adaptive input and adaptive softmax: the 4.x wt103 layout, and properties of the rest.

The wt103 layout (`div_val 4`, untied first projection, `same_length`, `clamp_len`) is checked against
`tests/fixtures/transfo_xl/legacy`, a tiny model written and run by transformers 4.34.1. Other combinations
(one table with projections, untied output layer, shared r-biases with pre-norm, two clusters) have no
reference here, so they are checked against properties that a wrong cluster offset, projection or tie
breaks: segment equivalence, the loss equals the gathered log-probabilities (value and gradient),
log-probabilities normalise, tied parameters are one tensor.
Tolerances: float32, as in test_transfo_xl.py (rounding ~1e-6; bugs move log-probs by >0.01).
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from custom_models.transfo_xl import TransformerXLConfig, TransformerXLForCausalLM
from custom_models.transfo_xl.modeling_transfo_xl import tied_parameter_names
from tests.tiny_models import transfo_xl_config

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "transfo_xl" / "legacy"  # see its README
VOCAB = 60
ATOL = 1e-5
REF_ATOL = 1e-4  # the fixture README's bound; we measure ~6e-6

VARIANTS = {
    "wt103_layout": dict(cutoffs=[10, 25, 40], div_val=2, tie_projs=[False, True, True, True]),
    "one_table_projected": dict(cutoffs=[10, 30], div_val=1, d_embed=16),
    "untied_output_layer": dict(cutoffs=[10, 30], div_val=2, tie_word_embeddings=False),
    "shared_r_bias_pre_norm": dict(cutoffs=[10, 30], div_val=2, untie_r=False, pre_lnorm=True, clamp_len=5),
    "two_clusters": dict(cutoffs=[20], div_val=2, proj_share_all_but_first=False),
}


def adaptive_model(seed: int = 0, **overrides) -> TransformerXLForCausalLM:
    fields = dict(
        vocab_size=VOCAB, mem_len=64, dropout=0.1, dropatt=0.1, init_std=0.2, proj_init_std=0.2, adaptive=True
    )
    fields.update(overrides)
    torch.manual_seed(seed)
    model = TransformerXLForCausalLM(transfo_xl_config(**fields)).eval()
    with torch.no_grad():  # non-trivial biases, so a bias taken from the wrong cluster shows
        for name, param in model.named_parameters():
            if name.startswith("crit.") and name.endswith("bias"):
                param.copy_(torch.randn_like(param))
    return model


def token_ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    """Ids drawn so that every cluster occurs (uniform over the vocabulary)."""
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def segment_log_probs(model, ids: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    mems, parts, start = None, [], 0
    for length in lengths:
        out = model(ids[:, start : start + length], mems=mems)
        mems, start = out.mems, start + length
        parts.append(out.logits)
    return torch.cat(parts, dim=1)


# --------------------------------------------------------------------------------------------------
# 1. The 4.x wt103 layout: transformers 4.34.1's own computation on a legacy folder
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def legacy_model() -> TransformerXLForCausalLM:
    return TransformerXLForCausalLM.from_pretrained(LEGACY / "legacy_checkpoint").eval()


def check_reference_log_probs(model) -> None:
    """Three segments of 8 in order, memory carried, the first with none: 4.34.1's `prediction_scores`."""
    ids = load_file(LEGACY / "input_ids.safetensors")["input_ids"]
    expected = load_file(LEGACY / "reference.safetensors")["log_probs"]
    torch.testing.assert_close(segment_log_probs(model, ids, [8, 8, 8]), expected, atol=REF_ATOL, rtol=0)


def test_legacy_folder_reproduces_reference_log_probs(legacy_model):
    check_reference_log_probs(legacy_model)


def test_legacy_folder_reproduces_losses_with_labels_shifted_within_segment(legacy_model):
    ids = load_file(LEGACY / "input_ids.safetensors")["input_ids"]
    expected = load_file(LEGACY / "reference.safetensors")["loss_labels_within_segment"].tolist()
    mems, losses = None, []
    with torch.no_grad():
        for start in (0, 8, 16):
            segment = ids[:, start : start + 8]
            out = legacy_model(segment, mems=mems, labels=segment)
            assert out.logits is None  # the adaptive loss never builds [tokens, vocab]
            losses.append(out.loss.item())
            mems = legacy_model(segment, mems=mems).mems
    assert losses == pytest.approx(expected, abs=REF_ATOL)


def test_legacy_folder_stream_targets_score_next_tokens_across_segments(legacy_model):
    """`target_ids` (the recipe's stream convention) reproduce 4.34.1's next-token NLL, boundaries included."""
    ids = load_file(LEGACY / "input_ids.safetensors")["input_ids"]
    nll = load_file(LEGACY / "reference.safetensors")["nll_next_token"]
    targets = torch.cat([ids[:, 1:], torch.full((2, 1), -100)], dim=1)
    mems = None
    with torch.no_grad():
        for start in (0, 8, 16):
            out = legacy_model(ids[:, start : start + 8], mems=mems, target_ids=targets[:, start : start + 8])
            mems = out.mems
            expected = nll[:, start : min(start + 8, 23)].mean()
            assert out.loss.item() == pytest.approx(expected.item(), abs=REF_ATOL)


def test_legacy_folder_ties_as_4x_did(legacy_model):
    crit, word_emb = legacy_model.crit, legacy_model.transformer.word_emb
    for i in range(4):
        assert crit.out_layers[i].weight is word_emb.emb_layers[i].weight
        assert crit.out_layers[i].bias is not None
    assert crit.out_projs[0] is not word_emb.emb_projs[0]  # tie_projs[0] is false in wt103
    assert all(crit.out_projs[i] is word_emb.emb_projs[i] for i in (1, 2, 3))


def legacy_copy(destination: Path, *, config_edit=None, state_dict_writer=None) -> Path:
    """A copy of the legacy checkpoint with its config edited or its weights rewritten in another format."""
    destination.mkdir()
    config = json.loads((LEGACY / "legacy_checkpoint" / "config.json").read_text())
    if config_edit:
        config = config_edit(config)
    (destination / "config.json").write_text(json.dumps(config))
    if state_dict_writer:
        state_dict = torch.load(LEGACY / "legacy_checkpoint" / "pytorch_model.bin", weights_only=True)
        state_dict_writer(state_dict, destination)
    else:
        shutil.copy(LEGACY / "legacy_checkpoint" / "pytorch_model.bin", destination)
    return destination


def test_legacy_config_without_model_type_loads_by_architecture(tmp_path):
    def pre_model_type_config(config: dict) -> dict:
        config.pop("model_type")
        return {**config, "architectures": ["TransfoXLLMHeadModel"]}

    folder = legacy_copy(tmp_path / "old", config_edit=pre_model_type_config)
    model = TransformerXLForCausalLM.from_pretrained(folder).eval()
    assert model.config.architectures == ["TransformerXLForCausalLM"]
    check_reference_log_probs(model)


def test_legacy_config_omitting_4x_defaults_gets_them(tmp_path):
    """A 4.x file leaves out fields at their 4.x default: the adaptive wt103 clusters, div_val 4."""
    config = json.loads((LEGACY / "legacy_checkpoint" / "config.json").read_text())
    for key in ("cutoffs", "div_val", "adaptive"):
        config.pop(key)
    (tmp_path / "config.json").write_text(json.dumps({**config, "vocab_size": 267735}))
    loaded = TransformerXLConfig.from_pretrained(tmp_path)
    assert (loaded.cutoffs, loaded.div_val, loaded.adaptive) == ([20000, 40000, 200000], 4, True)


def test_legacy_weights_in_zip_format_load(tmp_path):
    folder = legacy_copy(tmp_path / "zip", state_dict_writer=lambda sd, dst: torch.save(sd, dst / "pytorch_model.bin"))
    check_reference_log_probs(TransformerXLForCausalLM.from_pretrained(folder).eval())


def test_legacy_safetensors_without_tied_duplicates_load(tmp_path):
    def write_without_tied(state_dict: dict, destination: Path) -> None:
        tied = tied_parameter_names(TransformerXLConfig.from_pretrained(LEGACY / "legacy_checkpoint"))
        kept = {name: tensor.contiguous() for name, tensor in state_dict.items() if name not in tied}
        save_file(kept, destination / "model.safetensors", metadata={"format": "pt"})

    folder = legacy_copy(tmp_path / "st", state_dict_writer=write_without_tied)
    assert not (folder / "pytorch_model.bin").exists()
    check_reference_log_probs(TransformerXLForCausalLM.from_pretrained(folder).eval())


def test_save_pretrained_round_trip_keeps_ties_and_outputs(legacy_model, tmp_path):
    legacy_model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert "crit.out_projs.0" in saved and "crit.out_projs.1" not in saved  # tied copies are not stored
    reloaded = TransformerXLForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.crit.out_projs[1] is reloaded.transformer.word_emb.emb_projs[1]
    check_reference_log_probs(reloaded)


# --------------------------------------------------------------------------------------------------
# 2. Properties of every layout
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_log_probs_are_normalised_over_the_whole_vocabulary(variant):
    log_probs = adaptive_model(**VARIANTS[variant])(token_ids(2, 6)).logits
    assert log_probs.shape == (2, 6, VOCAB)
    torch.testing.assert_close(log_probs.logsumexp(-1), torch.zeros(2, 6), atol=ATOL, rtol=0)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_segments_with_memory_match_full_pass(variant):
    model = adaptive_model(**VARIANTS[variant])
    ids = token_ids(2, 13)
    torch.testing.assert_close(
        segment_log_probs(model, ids, [5, 1, 7]), segment_log_probs(model, ids, [13]), atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_loss_and_its_gradient_equal_those_of_the_gathered_log_probs(variant):
    """The cluster-by-cluster loss (no [tokens, vocab] matrix) against the full log-probabilities."""
    model = adaptive_model(**VARIANTS[variant])
    ids = token_ids(3, 10)
    targets = token_ids(3, 10, seed=2)
    targets[0, :4] = -100

    loss = model(ids, target_ids=targets).loss
    loss_grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    log_probs = model(ids).logits
    scored = targets != -100
    direct = -log_probs[scored].gather(1, targets[scored][:, None]).mean()
    direct_grads = torch.autograd.grad(direct, list(model.parameters()), allow_unused=True)

    torch.testing.assert_close(loss, direct, atol=ATOL, rtol=0)
    for name, (a, b) in zip([n for n, _ in model.named_parameters()], zip(loss_grads, direct_grads)):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-4, msg=name)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_tied_parameters_are_one_tensor(variant):
    model = adaptive_model(**VARIANTS[variant])
    expected = tied_parameter_names(model.config)
    assert expected  # every variant ties something: embeddings, projections or both
    for target, source in expected.items():
        assert model.get_parameter(target) is model.get_parameter(source), target
    tied_targets = set(expected)
    distinct = {id(p) for name, p in model.named_parameters(remove_duplicate=False) if name not in tied_targets}
    assert len(distinct) == len(list(model.parameters()))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_inputs_embeds_from_get_input_embeddings_equal_the_ids_path(variant):
    """The idiom of prompt tuning and of `generate(inputs_embeds=...)`: the model scales either input once."""
    model = adaptive_model(**VARIANTS[variant])
    ids = token_ids(2, 6)
    with torch.no_grad():
        embedded = model(inputs_embeds=model.get_input_embeddings()(ids)).logits
        torch.testing.assert_close(embedded, model(ids).logits, atol=0, rtol=0)


def test_projections_stay_tied_without_tied_word_embeddings():
    """4.x ties `tie_projs` whatever `tie_word_embeddings` says."""
    model = adaptive_model(**VARIANTS["untied_output_layer"])
    word_emb, crit = model.transformer.word_emb, model.crit
    assert crit.out_layers[1].weight is not word_emb.emb_layers[1].weight
    assert crit.out_projs[1] is word_emb.emb_projs[1] and crit.out_projs[0] is not word_emb.emb_projs[0]


def test_one_table_shares_its_projection_with_every_tied_cluster():
    model = adaptive_model(**VARIANTS["one_table_projected"])
    assert len(model.transformer.word_emb.emb_layers) == 1 and len(model.crit.out_projs) == 3
    assert model.crit.out_projs[1] is model.transformer.word_emb.emb_projs[0]
    assert model.crit.out_projs[2] is model.transformer.word_emb.emb_projs[0]


def test_training_loss_runs_each_tail_only_on_its_own_targets(monkeypatch):
    model = adaptive_model(**VARIANTS["wt103_layout"]).train()
    ids, targets = token_ids(2, 16), token_ids(2, 16, seed=3)
    calls = []
    original = model.crit.cluster_logits

    def recording(hidden, cluster, parameters):
        logits = original(hidden, cluster, parameters)
        calls.append((cluster, tuple(logits.shape)))
        return logits

    monkeypatch.setattr(model.crit, "cluster_logits", recording)
    assert model(ids, target_ids=targets).logits is None
    bounds = model.config.cluster_bounds
    expected = [(0, (32, 10 + 3))] + [
        (i, (int(((targets >= bounds[i]) & (targets < bounds[i + 1])).sum()), bounds[i + 1] - bounds[i]))
        for i in (1, 2, 3)
    ]
    assert calls == expected


def test_out_of_range_ids_are_rejected():
    with pytest.raises(IndexError, match=r"\[0, 60\)"):
        adaptive_model(**VARIANTS["wt103_layout"])(torch.tensor([[1, VOCAB]]))


def test_generate_with_memory_matches_greedy_full_recomputation():
    model = adaptive_model(**VARIANTS["wt103_layout"], mem_len=16)
    prompt = token_ids(2, 5)
    generated = model.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)
    sequence = prompt
    with torch.no_grad():
        for _ in range(8):
            next_token = model(sequence).logits[:, -1].argmax(-1, keepdim=True)
            sequence = torch.cat([sequence, next_token], dim=1)
    assert torch.equal(generated, sequence)


@pytest.mark.slow
def test_save_and_load_in_clean_process_gives_identical_log_probs(tmp_path, forward_in_clean_process):
    model = adaptive_model(**VARIANTS["one_table_projected"])
    model.save_pretrained(tmp_path / "model")
    ids = token_ids(2, 7)
    with torch.no_grad():
        expected = model(ids).logits
    log_probs = forward_in_clean_process(tmp_path / "model", "AutoModelForCausalLM", {"input_ids": ids})
    torch.testing.assert_close(log_probs, expected, atol=0, rtol=0)
