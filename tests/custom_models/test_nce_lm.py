"""Tests of the NCE language model (custom_models/nce_lm).

The central test is NCE's defining property (Gutmann & Hyvärinen 2012; Mnih & Teh 2012): the expected
NCE gradient tends to the maximum-likelihood gradient of a normalised model as k grows, with
error O(1/k). It is computed exactly (a float64 sum over the noise distribution, no sampling)
through the project's own `nce_loss`, and three broken variants fed through the same machinery
must fail to converge.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from transformers import AutoModelForCausalLM, GPT2LMHeadModel

import custom_models  # noqa: F401  (registers the Auto classes)
from custom_models.nce_lm import (
    NCELMConfig,
    NCELMForCausalLM,
    count_tokens,
    nce_loss,
    noise_log_probs_from_counts,
)
from tests.conftest import repeats_bit_for_bit_on_two_threads
from tests.tiny_models import GPT2_NO_DROPOUT, gpt2_config, nce_lm_config

VOCAB = 50
TINY = dict(vocab_size=VOCAB, **GPT2_NO_DROPOUT, bos_token_id=0, eos_token_id=0)


def tiny_model(**overrides) -> NCELMForCausalLM:
    torch.manual_seed(0)
    return NCELMForCausalLM(nce_lm_config(**{**TINY, "num_noise_samples": 16, **overrides}))


def zipf_log_q(vocab: int = VOCAB) -> torch.Tensor:
    counts = 1000.0 * torch.arange(1, vocab + 1, dtype=torch.float64) ** -1.2
    return noise_log_probs_from_counts(counts, noise_power=0.75)


# ----------------------------------------------------------------------------------------------
# 1. Expected NCE gradient -> MLE gradient, O(1/k)
# ----------------------------------------------------------------------------------------------

NUM_CONTEXTS, HIDDEN = 8, 16
K_GRID = (1, 10, 100, 1000, 10000)


@pytest.fixture(scope="module")
def seed_fixture():
    """float64: contexts h, output layer (W, b), a data distribution p~(.|h) deliberately unlike
    the model, and a Zipf-like noise q ∝ rank^-0.75."""
    g = torch.Generator().manual_seed(0)
    contexts = torch.randn(NUM_CONTEXTS, HIDDEN, generator=g, dtype=torch.float64)
    weight = 0.5 * torch.randn(VOCAB, HIDDEN, generator=g, dtype=torch.float64)
    bias = 0.5 * torch.randn(VOCAB, generator=g, dtype=torch.float64)
    p_data = torch.softmax(1.5 * torch.randn(NUM_CONTEXTS, VOCAB, generator=g, dtype=torch.float64), -1)
    q = torch.arange(1, VOCAB + 1, dtype=torch.float64) ** -0.75
    return contexts, weight, bias, p_data, q / q.sum()


def _normalised_scores(params):
    """The model normalised at this θ: `s = logits - logsumexp(logits).detach()`, so
    sum_w exp(s) = 1 here while grad log u = grad logits (log Z held at 0)."""
    contexts, weight, bias = params
    logits = contexts @ weight.T + bias  # [h, V]
    return logits - torch.logsumexp(logits, -1, keepdim=True).detach()


def expected_nce_loss(scores, p_data, q, k, *, score_shift=0.0, correct=True, average_noise=False):
    """E over targets ~ p~(.|h) and k noise ids ~ q of the NCE loss, through `nce_loss`.

    Every (context h, id w) pair is a "token" with target w, weighted by P(h) p~(w|h), and every
    vocabulary id is a "noise sample" of that token weighted by k q(w). The noise part repeats
    for each w of a context with total weight P(h), so the sum is exactly the expectation.
    Negative controls: `score_shift=log 2` (Z = 2), `correct=False` (no log kq: NEG),
    `average_noise=True` (noise terms divided by k)."""
    scores = scores + score_shift
    h, v = scores.shape
    target_scores = scores.reshape(-1)  # [h*V]
    noise_scores = scores.repeat_interleave(v, dim=0)  # [h*V, V]: row (h, w) sees all of s(., h)
    log_q = q.log() if correct else torch.zeros_like(q)
    num_noise = k if correct else 1  # log k q = 0 when uncorrected
    noise_weights = k * q / (k if average_noise else 1)
    losses = nce_loss(target_scores, noise_scores, log_q.repeat(h), log_q, num_noise, noise_weights)
    return (losses * p_data.reshape(-1)).sum() / h


def _flat_grad(loss, params):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


def _relative_errors(seed_fixture, **control):
    contexts, weight, bias, p_data, q = seed_fixture
    params = [t.clone().requires_grad_(True) for t in (contexts, weight, bias)]
    logits = params[0] @ params[1].T + params[2]
    mle = _flat_grad(-(p_data * torch.log_softmax(logits, -1)).sum() / NUM_CONTEXTS, params)
    errors = []
    for k in K_GRID:
        nce = _flat_grad(expected_nce_loss(_normalised_scores(params), p_data, q, k, **control), params)
        errors.append(((nce - mle).norm() / mle.norm()).item())
    return errors


def test_expected_nce_gradient_converges_to_mle_as_one_over_k(seed_fixture):
    errors = _relative_errors(seed_fixture)
    assert all(a > b for a, b in zip(errors[:-1], errors[1:], strict=True)), errors
    # O(1/k): a decade more noise divides the error by ~10 (9.36 measured here).
    assert 8 < errors[3] / errors[4] < 12, errors
    assert errors[4] < 0.01, errors  # 0.56% measured (k * err settles near 56)


@pytest.mark.parametrize(
    "control",
    [
        {"score_shift": math.log(2.0)},  # model sums to Z = 2, not 1
        {"correct": False},  # no log(k q) correction (negative sampling)
        {"average_noise": True},  # noise terms averaged over k instead of summed
    ],
    ids=["Z_equals_2", "no_log_kq_correction", "noise_averaged"],
)
def test_negative_controls_do_not_converge(seed_fixture, control):
    errors = _relative_errors(seed_fixture, **control)
    # The correct loss is at 0.4% at k=1e4 and falling 10x per decade; a broken one stays O(1)
    # (0.94 / 78 / 0.96 measured at k=1e4) and has stopped improving.
    assert errors[4] > 0.5, errors
    assert errors[3] / errors[4] < 2, errors


def test_score_space_error_decreases_in_k_for_every_coordinate(seed_fixture):
    """Per (h, w) the error of the expected NCE score gradient is P(h) u/(u + kq) (p~ - u):
    strictly decreasing in k (a theorem, checked here through `nce_loss`)."""
    contexts, weight, bias, p_data, q = seed_fixture
    logits = contexts @ weight.T + bias
    scores = (logits - torch.logsumexp(logits, -1, keepdim=True)).requires_grad_(True)
    mle = -(p_data - scores.detach().exp()) / NUM_CONTEXTS
    previous = None
    for k in K_GRID:
        (grad,) = torch.autograd.grad(expected_nce_loss(scores, p_data, q, k), scores)
        error = (grad - mle).abs()
        u = scores.detach().exp()
        closed_form = (u / (u + k * q) * (p_data - u)).abs() / NUM_CONTEXTS
        torch.testing.assert_close(error, closed_form, rtol=1e-9, atol=1e-15)  # float64 rounding
        if previous is not None:
            assert (error < previous).all()
        previous = error


@pytest.mark.parametrize(("k", "steps"), [(1, 20000), (10, 5000), (100, 2000)])
def test_sampled_gradient_through_sampler_matches_expectation(seed_fixture, k, steps):
    """`steps` shared noise slabs from the model's own sampler, targets ~ p~: the mean gradient on
    the scores agrees with the exact expectation coordinate by coordinate. The per-step gradient
    is -(1 - σ(Δ)) 1[t = w] + σ(Δ) count(w) with count ~ Binomial(k, q) (independent of t),
    so its variance is (1-σ)² p~(1-p~) + σ² k q (1-q) (times P(h)²)."""
    contexts, weight, bias, p_data, q = seed_fixture
    logits = contexts @ weight.T + bias
    scores = (logits - torch.logsumexp(logits, -1, keepdim=True)).requires_grad_(True)
    model = tiny_model(num_noise_samples=k, noise_seed=1)
    model.set_noise_distribution(q.log())
    log_q = model.noise_log_probs.double()  # the fp32 q actually sampled from

    noise = model.sample_noise((steps, k))  # one shared slab per step
    g = torch.Generator().manual_seed(2)
    targets = torch.multinomial(p_data, steps, replacement=True, generator=g).T  # [steps, h]
    rows = torch.arange(NUM_CONTEXTS).expand(steps, -1)
    target_scores = scores[rows, targets]  # [steps, h]
    noise_scores = scores[:, noise].permute(1, 0, 2)  # [steps, h, k]: same slab for every h
    losses = nce_loss(
        target_scores.reshape(-1),
        noise_scores.reshape(-1, k),
        log_q[targets].reshape(-1),
        log_q[noise].repeat_interleave(NUM_CONTEXTS, 0),
        k,
    )
    (sampled,) = torch.autograd.grad(losses.sum() / (steps * NUM_CONTEXTS), scores)

    (expected,) = torch.autograd.grad(expected_nce_loss(scores, p_data, log_q.exp(), k), scores)
    sig = torch.sigmoid(scores.detach() - math.log(k) - log_q)
    q_used = log_q.exp()
    variance = ((1 - sig) ** 2 * p_data * (1 - p_data) + sig**2 * k * q_used * (1 - q_used)) / NUM_CONTEXTS**2
    z = (sampled - expected) / (variance / steps).sqrt()
    # 400 coordinates: P(max |z| > 5.5) < 1e-5 under the CLT; measured max |z| 2.8-3.2.
    assert z.abs().max() < 5.5, z.abs().max()


# ----------------------------------------------------------------------------------------------
# 2-4. Losses, sampler and diagnostics of the model
# ----------------------------------------------------------------------------------------------


def _batch(seed=0, batch=3, length=12):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, VOCAB, (batch, length), generator=g)
    labels = input_ids.clone()
    labels[0, :4] = -100  # ignored positions (e.g. a prompt)
    return input_ids, labels


@pytest.mark.parametrize("loss_chunk_size", [None, 5])  # the default (one block) and several blocks
def test_full_loss_equals_gpt2_lm_head_loss(loss_chunk_size):
    model = tiny_model(loss_type="full", loss_chunk_size=loss_chunk_size).train()
    with torch.no_grad():
        model.lm_head.bias.zero_()  # GPT-2's lm_head has no bias
    reference = GPT2LMHeadModel(gpt2_config(**TINY)).train()
    reference.load_state_dict(model.state_dict(), strict=False)
    input_ids, labels = _batch()
    ours, theirs = model(input_ids=input_ids, labels=labels), reference(input_ids=input_ids, labels=labels)
    # Same fp32 arithmetic up to summation order in the reduction (the fused loss sums block by block).
    torch.testing.assert_close(ours.loss, theirs.loss, rtol=1e-6, atol=1e-6)
    ours.loss.backward()
    theirs.loss.backward()
    for name, param in reference.named_parameters():  # the tied table gets the embedding and output shares
        torch.testing.assert_close(model.get_parameter(name).grad, param.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert ours.logits is None  # the fused loss never builds them; without labels they are returned
    torch.testing.assert_close(model(input_ids=input_ids).logits, theirs.logits)


def test_sampled_noise_follows_q():
    model = tiny_model()
    log_q = zipf_log_q()
    model.set_noise_distribution(log_q)
    counts = torch.bincount(model.sample_noise((1000, 200)).reshape(-1), minlength=VOCAB).double()
    expected = log_q.double().exp()
    expected = expected * counts.sum() / expected.sum()
    # Fixed seed, so deterministic (p = 0.91 here); the same counts against the uniform or the
    # un-powered Zipf reject at p ~ 0, so the test has power against a wrong q.
    assert stats.chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3
    uniform = torch.full((VOCAB,), counts.sum().item() / VOCAB)
    assert stats.chisquare(counts.numpy(), uniform.numpy()).pvalue < 1e-6


@pytest.mark.parametrize(("noise_sharing", "expected_shape"), [("batch", (16,)), ("token", (30, 16))])
def test_noise_sharing_draws_one_slab_or_one_row_per_token(noise_sharing, expected_shape):
    model = tiny_model(noise_sharing=noise_sharing).train()
    shapes, sample = [], model.sample_noise
    model.sample_noise = lambda shape: shapes.append(tuple(shape)) or sample(shape)
    input_ids, labels = _batch()  # 3 x 11 shifted positions, 3 of them ignored: 30 scored
    loss = model(input_ids=input_ids, labels=labels).loss
    assert torch.isfinite(loss)
    assert shapes == [expected_shape]


def test_noise_is_reproducible_from_seed():
    a, b = tiny_model(noise_seed=7), tiny_model(noise_seed=7)
    state = a.noise_generator.get_state()
    first = a.sample_noise((64,))
    assert torch.equal(first, b.sample_noise((64,)))
    a.noise_generator.set_state(state)
    assert torch.equal(first, a.sample_noise((64,)))


def _loss_with_reset_generator(model, input_ids, labels):
    model.noise_generator.manual_seed(3)
    return model(input_ids=input_ids, labels=labels).loss


@pytest.mark.slow
def test_training_gradients_repeat_bit_for_bit_on_two_threads():
    # Gathering the rows of repeated ids as `weight[ids]` differentiates through index_put_(accumulate=True), whose
    # CPU threads add a repeated id's gradients with atomics in an order that changes from call to call (measured:
    # the first repeat already differed). 2048 tokens x d 32 gives both threads work (index_put_'s grain is 32768
    # elements); 50 ids repeat often.
    model = tiny_model(num_noise_samples=64)
    model.set_noise_distribution(zipf_log_q())
    ids = torch.randint(0, VOCAB, (32, 64), generator=torch.Generator().manual_seed(0))

    def gradients() -> torch.Tensor:
        model.zero_grad()
        _loss_with_reset_generator(model, ids, ids).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    assert repeats_bit_for_bit_on_two_threads(gradients)


def test_accidental_hits_removed_by_nce_are_exactly_the_hit_terms():
    """With q concentrated on a few ids many noise samples equal the target. "remove" drops
    precisely the hit (token, noise) terms: loss_keep - loss_remove = mean over tokens of the
    sum of -logsigmoid(-Δ) over hits, recomputed here from the same draw."""
    model = tiny_model(num_noise_samples=32).train()
    log_q = torch.full((VOCAB,), -20.0)
    log_q[:3] = 0.0
    model.set_noise_distribution(log_q)
    input_ids = torch.randint(0, 3, (2, 10), generator=torch.Generator().manual_seed(0))
    labels = input_ids
    keep = _loss_with_reset_generator(model, input_ids, labels)
    model.config.accidental_hits = "remove"
    remove = _loss_with_reset_generator(model, input_ids, labels)

    model.noise_generator.manual_seed(3)
    noise = model.sample_noise((32,))
    with torch.no_grad():
        hidden = model.transformer(input_ids).last_hidden_state[:, :-1].reshape(-1, model.config.n_embd)
        targets = labels[:, 1:].reshape(-1)
        scores = hidden @ model.lm_head.weight[noise].T + model.lm_head.bias[noise]  # log Z = 0
        delta = scores - math.log(32) - model.noise_log_probs[noise]
        hits = noise == targets[:, None]
        hit_terms = (-F.logsigmoid(-delta) * hits).sum(-1).mean()
    assert hits.any()
    torch.testing.assert_close(keep - remove, hit_terms, rtol=1e-5, atol=1e-6)  # fp32 sums


def test_ranking_removes_hits_by_default_and_that_lowers_the_loss():
    model = tiny_model(loss_type="ranking", num_noise_samples=32).train()
    log_q = torch.full((VOCAB,), -20.0)
    log_q[:3] = 0.0
    model.set_noise_distribution(log_q)
    input_ids = torch.randint(0, 3, (2, 10), generator=torch.Generator().manual_seed(0))
    assert model.config.remove_accidental_hits
    remove = _loss_with_reset_generator(model, input_ids, input_ids)
    model.config.accidental_hits = "keep"
    keep = _loss_with_reset_generator(model, input_ids, input_ids)
    # Removing hits takes terms out of the log-sum-exp: strictly lower loss.
    assert remove < keep - 1e-3, (remove, keep)


def test_eval_loss_is_exact_cross_entropy_and_self_normalised_nll_plus_log_z():
    model = tiny_model().eval()
    model.set_noise_distribution(zipf_log_q())
    input_ids, labels = _batch()
    with torch.no_grad():
        out = model(input_ids=input_ids, labels=labels)
        logits = model(input_ids=input_ids).logits
    exact = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1))
    # fp32 log-sum-exp in a different order: agreement to a few ulps of a ~4.0 loss.
    torch.testing.assert_close(out.loss, exact, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.loss, out.self_normalized_nll + out.log_partition_mean, rtol=1e-6, atol=1e-6)
    assert out.log_partition_std >= 0 and 0 <= out.log_partition_outlier_fraction <= 1


def test_train_forward_never_builds_full_logits():
    model = tiny_model().train()
    calls = []
    model.lm_head.register_forward_hook(lambda *args: calls.append(1))
    input_ids, labels = _batch()
    out = model(input_ids=input_ids, labels=labels)
    out.loss.backward()
    assert out.logits is None and not calls
    assert model.transformer.wte.weight.grad is not None  # NCE gathers rows of the tied weight


def test_ignored_labels_contribute_nothing():
    """The sampled loss is the mean over scored positions only (shifted labels != -100): it equals
    the per-token losses of exactly those hidden states, with the same noise draw."""
    model = tiny_model().train()
    input_ids, labels = _batch()
    loss = _loss_with_reset_generator(model, input_ids, labels)
    keep = labels[:, 1:] != -100
    with torch.no_grad():
        hidden = model.transformer(input_ids).last_hidden_state[:, :-1][keep]
        model.noise_generator.manual_seed(3)
        expected = model.sampled_token_losses(hidden, labels[:, 1:][keep]).mean()
    torch.testing.assert_close(loss, expected)
    assert model(input_ids=input_ids, labels=torch.full_like(labels, -100)).loss == 0


@pytest.mark.parametrize("learn", [False, True])
def test_log_partition_is_learned_only_when_configured(learn):
    model = tiny_model(learn_log_partition=learn, log_partition=0.5).train()
    assert model.log_partition.item() == 0.5 and model.log_partition.requires_grad == learn
    input_ids, labels = _batch()
    model(input_ids=input_ids, labels=labels).loss.backward()
    assert (model.log_partition.grad is not None and model.log_partition.grad != 0) == learn


def test_num_items_in_batch_divides_the_summed_loss():
    model = tiny_model().eval()
    input_ids, labels = _batch()
    with torch.no_grad():
        mean = model(input_ids=input_ids, labels=labels).loss
        scored = int((labels[:, 1:] != -100).sum())
        summed = model(input_ids=input_ids, labels=labels, num_items_in_batch=2 * scored).loss
    torch.testing.assert_close(summed, mean / 2)


def test_count_tokens_and_smoothing():
    counts = count_tokens([[0, 1, 1, -100], torch.tensor([1, 2])], vocab_size=4)
    assert counts.tolist() == [1.0, 3.0, 1.0, 0.0]
    q = noise_log_probs_from_counts(counts, smoothing=1.0).exp()
    torch.testing.assert_close(q, torch.tensor([2.0, 4.0, 2.0, 1.0]) / 9)
    q75 = noise_log_probs_from_counts(counts, noise_power=0.75, smoothing=1.0).exp()
    torch.testing.assert_close(q75, torch.tensor([2.0, 4.0, 2.0, 1.0]) ** 0.75 / (2 * 2**0.75 + 4**0.75 + 1))


def test_set_noise_distribution_resets_bias_to_log_q():
    model = tiny_model()
    log_q = zipf_log_q()
    model.set_noise_distribution(log_q)
    torch.testing.assert_close(model.lm_head.bias.detach(), log_q)
    assert model.noise_log_probs.dtype == torch.float32


# ----------------------------------------------------------------------------------------------
# 5. Config validation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_noise_samples", 0),
        ("num_noise_samples", -3),
        ("noise_power", 0.0),
        ("noise_power", 1.5),
        ("loss_type", "softmax"),
        ("noise_sharing", "step"),
        ("accidental_hits", "drop"),
        ("loss_chunk_size", 0),
    ],
)
def test_invalid_config_raises_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        NCELMConfig(**{field: value})


# ----------------------------------------------------------------------------------------------
# 6-7. Saving, loading, generation, GPT-2 checkpoints
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_round_trip_in_clean_process_keeps_eval_loss_and_noise(tmp_path, forward_in_clean_process):
    model = tiny_model().eval()
    model.set_noise_distribution(zipf_log_q())
    model.save_pretrained(tmp_path / "model")
    input_ids, labels = _batch()
    with torch.no_grad():
        expected = model(input_ids=input_ids, labels=labels).loss
    loss = forward_in_clean_process(
        tmp_path / "model", "AutoModelForCausalLM", {"input_ids": input_ids, "labels": labels}, output_name="loss"
    )
    assert torch.equal(loss, expected)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert torch.equal(reloaded.noise_log_probs, model.noise_log_probs)
    assert torch.equal(reloaded.lm_head.bias, model.lm_head.bias)
    assert reloaded.lm_head.weight is reloaded.transformer.wte.weight


def test_generate_uses_full_logits():
    model = tiny_model().eval()
    prompt = torch.tensor([[1, 2, 3]])
    generated = model.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=5, do_sample=False, pad_token_id=0
    )
    with torch.no_grad():
        greedy = model(input_ids=generated[:, :-1]).logits[0, 2:].argmax(-1)
    assert generated.shape == (1, 8)
    assert torch.equal(generated[0, 3:], greedy)  # each new token is the argmax of the full logits


def test_logits_to_keep_selects_positions_as_transformers_causal_lms_do():
    # An int keeps the last positions, a 1-D tensor those positions, a boolean [b, t] mask its true positions,
    # flattened (what the QA recipe's answer-only loss asks for), each equal to the full logits there.
    model = tiny_model().eval()
    ids = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, 2], mask[1, 4:6] = True, True
    with torch.no_grad():
        full = model(input_ids=ids).logits  # [2, 7, V]
        last, positions, masked = (
            model(input_ids=ids, logits_to_keep=keep).logits for keep in (2, torch.tensor([1, 5]), mask)
        )
    torch.testing.assert_close(last, full[:, -2:])
    torch.testing.assert_close(positions, full[:, [1, 5]])
    torch.testing.assert_close(masked, full[mask])
    assert masked.shape == (3, VOCAB)


def test_gpt2_checkpoint_initialises_backbone_and_tied_embeddings(tmp_path):
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(gpt2_config(**TINY)).eval()
    gpt2.save_pretrained(tmp_path / "gpt2")
    model = NCELMForCausalLM.from_pretrained(tmp_path / "gpt2").eval()
    for name, tensor in gpt2.transformer.state_dict().items():
        assert torch.equal(model.transformer.state_dict()[name], tensor), name
    assert model.lm_head.weight is model.transformer.wte.weight
    torch.testing.assert_close(model.noise_log_probs, torch.full((VOCAB,), -math.log(VOCAB)))
    torch.testing.assert_close(model.lm_head.bias.detach(), model.noise_log_probs)
    input_ids, labels = _batch()
    with torch.no_grad():
        # A uniform bias shifts every logit equally: the exact loss is GPT-2's.
        torch.testing.assert_close(
            model(input_ids=input_ids, labels=labels).loss,
            gpt2(input_ids=input_ids, labels=labels).loss,
            rtol=1e-6,
            atol=1e-6,
        )
