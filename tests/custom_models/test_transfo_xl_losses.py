"""Transformer-XL's five training losses (`loss_type`), each against a direct computation on a tiny model.

The NCE maths itself (`sampled_losses.nce_loss` / `ranking_loss`, the k -> inf expected-gradient limit and
its broken variants) is tested once, in test_nce_lm.py: the Transformer-XL package's `sampled_losses.py` is a
copy of the NCE package's file (custom_models/check_copies.py). Here: that the model feeds the right
scores, noise and corrections into it, that the exact losses are exact, and that training with
`chunked`, `adaptive`, `nce` or `ranking` never allocates a `[tokens, vocab]` tensor.
Tolerances: float32; the exact losses agree with log_softmax to rounding (~1e-7 of a ~6.2 loss), so 1e-5
(the issue's bound) has a wide margin, while a wrong row, bias or shift moves the loss by > 1e-2.
"""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode

from custom_models.transfo_xl import TransformerXLConfig, TransformerXLForCausalLM
from custom_models.transfo_xl.sampled_losses import noise_log_probs_from_counts
from tests.conftest import repeats_bit_for_bit_on_two_threads
from tests.custom_models.test_linear_cross_entropy import TableSizedTensors
from tests.tiny_models import TRANSFO_XL_NO_DROPOUT, transfo_xl_config

VOCAB, BATCH, LENGTH = 500, 3, 21
PACKAGE = Path(__file__).resolve().parents[2] / "custom_models" / "transfo_xl"
CUTOFFS = [50, 200]


def tiny_model(loss_type: str, **overrides) -> TransformerXLForCausalLM:
    """dropout 0, so train-mode and eval-mode forwards compute the same function."""
    fields = dict(
        vocab_size=VOCAB, **TRANSFO_XL_NO_DROPOUT, loss_type=loss_type, num_noise_samples=24, loss_chunk_size=16
    )
    if loss_type == "adaptive":
        fields.update(cutoffs=CUTOFFS, adaptive=True, div_val=2)
    fields.update(overrides)
    torch.manual_seed(0)
    model = TransformerXLForCausalLM(transfo_xl_config(**fields))
    with torch.no_grad():  # non-trivial output biases: a bias taken from the wrong row shows
        for name, param in model.named_parameters():
            if name.startswith("crit.") and name.endswith("bias"):
                param.copy_(torch.randn_like(param))
    if loss_type in ("nce", "ranking"):
        model.set_noise_distribution(zipf_log_q(), reset_output_bias=False)
    return model


def zipf_log_q() -> torch.Tensor:
    return noise_log_probs_from_counts(1000.0 * torch.arange(1, VOCAB + 1.0) ** -1.1, noise_power=0.75)


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and labels; the first 5 labels of row 0 are -100 (they must contribute nothing)."""
    ids = torch.randint(0, VOCAB, (BATCH, LENGTH), generator=torch.Generator().manual_seed(seed))
    labels = ids.clone()
    labels[0, :5] = -100
    return ids, labels


def targets_kwargs(convention: str, ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """`labels` (shifted inside the segment) or `target_ids` (already aligned: position t scores ids[t+1])."""
    if convention == "labels":
        return {"input_ids": ids, "labels": labels}
    target_ids = torch.cat([labels[:, 1:], torch.full((BATCH, 1), -100)], dim=1)
    return {"input_ids": ids, "target_ids": target_ids}


def reference_log_probs_and_targets(model, ids, labels):
    """Exact log-probabilities of the scored positions [n, V] from the model's own full output (no loss
    asked: raw scores for a full table, log-probabilities for an adaptive one), and their targets [n]."""
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].double()
    kept = labels[:, 1:] != -100
    return torch.log_softmax(logits[kept], dim=-1), labels[:, 1:][kept]


# --------------------------------------------------------------------------------------------------
# 1. Exact losses: full, chunked, adaptive
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["labels", "target_ids"])
@pytest.mark.parametrize("loss_type", ["full", "chunked", "adaptive"])
def test_exact_training_losses_equal_cross_entropy_of_the_models_log_probs(loss_type, convention):
    model = tiny_model(loss_type).train()
    ids, labels = batch()
    loss = model(**targets_kwargs(convention, ids, labels)).loss
    log_probs, targets = reference_log_probs_and_targets(model, ids, labels)
    expected = F.nll_loss(log_probs, targets)
    assert abs(loss.item() - expected.item()) < 1e-5, (loss.item(), expected.item())


@pytest.mark.parametrize("convention", ["labels", "target_ids"])
@pytest.mark.parametrize("loss_type", ["full", "chunked", "adaptive", "nce", "ranking"])
def test_a_batch_with_every_target_ignored_has_loss_zero_and_no_gradient(loss_type, convention):
    # The mean over zero tokens: summed token losses (none) over the count clamped to 1, as transformers'
    # causal-LM loss computes it when given `num_items_in_batch`; a plain mean would be 0 / 0 = NaN.
    model = tiny_model(loss_type).train()
    ids, _ = batch()
    loss = model(**targets_kwargs(convention, ids, torch.full_like(ids, -100))).loss
    assert loss.item() == 0.0
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is None or not param.grad.any(), name


@pytest.mark.parametrize("loss_chunk_size", [16, None])  # 4 blocks of the 55 tokens; the default: one block
def test_chunked_loss_and_gradient_equal_the_full_softmax_ones(loss_chunk_size):
    ids, labels = batch()
    gradients = {}
    for loss_type in ("full", "chunked"):
        model = tiny_model(loss_type, loss_chunk_size=loss_chunk_size).train()
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        gradients[loss_type] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    (full_loss, full_grads), (chunked_loss, chunked_grads) = gradients["full"], gradients["chunked"]
    torch.testing.assert_close(chunked_loss, full_loss, rtol=0, atol=1e-6)  # float32 rounding of a ~6.2 loss
    for name, grad in full_grads.items():  # float32 sums in another order: ~1e-8 absolute
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_chunked_training_holds_one_gradient_for_the_tied_table():
    # The input lookup adds its rows into the fused loss's weight gradient (`SharedTableGradient`), so the tied
    # table has one [vocab, d] gradient, not the loss's and the lookup's; every gradient is a plain lookup's.
    model = tiny_model("chunked").train()
    table = model.transformer.word_emb.emb_layers[0].weight
    assert model.crit.out_layers[0].weight is table
    ids, labels = batch()
    with TableSizedTensors(table) as recorder:
        model(input_ids=ids, labels=labels).loss.backward()
    assert recorder.count == 1, recorder.count
    shared = {name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None}
    model.zero_grad(set_to_none=True)
    with TableSizedTensors(table) as control:  # inputs_embeds: the plain lookup, autograd adds the two
        model(inputs_embeds=model.transformer.word_emb(ids), labels=labels).loss.backward()
    assert control.count >= 2, control.count
    plain = {name: param.grad for name, param in model.named_parameters() if param.grad is not None}
    assert shared.keys() == plain.keys()
    for name, grad in plain.items():  # the same sums in another order: float32 rounding
        torch.testing.assert_close(shared[name], grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("loss_type", ["chunked", "nce", "ranking"])
def test_evaluation_is_the_exact_cross_entropy_with_log_partition_statistics(loss_type):
    model = tiny_model(loss_type).eval()
    ids, labels = batch()
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
        scores = model(input_ids=ids).logits[:, :-1][labels[:, 1:] != -100].double()  # raw scores [n, V]
    log_z = torch.logsumexp(scores, dim=-1)
    targets = labels[:, 1:][labels[:, 1:] != -100]
    exact = (log_z - scores.gather(1, targets[:, None]).squeeze(1)).mean()
    assert out.logits is None
    assert abs(out.loss.item() - exact.item()) < 1e-5
    assert abs(out.log_partition_mean.item() - log_z.mean().item()) < 1e-5
    assert abs(out.log_partition_std.item() - log_z.std(correction=0).item()) < 1e-5
    assert out.log_partition_outlier_fraction.item() == pytest.approx((log_z.abs() > 1).double().mean().item())


# --------------------------------------------------------------------------------------------------
# 2. Sampled losses: the formula on the sampled set
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["labels", "target_ids"])
@pytest.mark.parametrize("loss_type", ["nce", "ranking"])
def test_sampled_training_loss_equals_the_formula_on_the_drawn_noise(loss_type, convention):
    """Written out directly (not through `sampled_losses`): delta = s - log k - log q with s = h W^T + b;
    nce: -log sig(delta_t) - sum_j log sig(-delta_nj), hits kept; ranking: -log softmax over the target and
    the noise ids that are not the target."""
    model = tiny_model(loss_type).train()
    ids, labels = batch()
    model.noise_generator.manual_seed(5)
    loss = model(**targets_kwargs(convention, ids, labels)).loss

    k = model.config.num_noise_samples
    model.noise_generator.manual_seed(5)
    noise = model.sample_noise((k,))
    with torch.no_grad():
        scores = model(input_ids=ids).logits[:, :-1].double()  # [b, t-1, V] raw scores
    kept = labels[:, 1:] != -100
    scores, targets = scores[kept], labels[:, 1:][kept]  # [n, V], [n]
    delta = scores - math.log(k) - model.noise_log_probs.double()  # [n, V]
    delta_target = delta.gather(1, targets[:, None]).squeeze(1)  # [n]
    delta_noise = delta[:, noise]  # [n, k]
    if loss_type == "nce":
        expected = -F.logsigmoid(delta_target) - F.logsigmoid(-delta_noise).sum(-1)
    else:
        delta_noise = delta_noise.masked_fill(noise[None, :] == targets[:, None], float("-inf"))
        expected = torch.logsumexp(torch.cat([delta_target[:, None], delta_noise], 1), 1) - delta_target
    assert abs(loss.item() - expected.mean().item()) < 1e-5, (loss.item(), expected.mean().item())


def test_sampled_loss_draws_one_shared_slab_of_k_noise_ids_per_step():
    model = tiny_model("nce").train()
    shapes, sample = [], model.sample_noise
    model.sample_noise = lambda shape: shapes.append(tuple(shape)) or sample(shape)
    ids, labels = batch()
    model(input_ids=ids, labels=labels).loss.backward()
    assert shapes == [(24,)]
    assert model.crit.out_layers[0].weight.grad is not None  # tied: the embedding table gets the gradient
    assert model.crit.out_layers[0].weight is model.transformer.word_emb.emb_layers[0].weight


@pytest.mark.slow
def test_sampled_training_gradients_repeat_bit_for_bit_on_two_threads():
    # As test_nce_lm.py's test of the same name: rows of repeated ids gathered by `weight[ids]` get their gradients
    # added by atomics from both CPU threads, in another order each call. 2048 tokens x d 32 over 50 ids. (Ranking
    # scores the same gathered rows.)
    model = tiny_model("nce").train()
    ids = torch.randint(0, 50, (32, 64), generator=torch.Generator().manual_seed(0))

    def gradients() -> torch.Tensor:
        model.zero_grad()
        model.noise_generator.manual_seed(3)
        model(input_ids=ids, labels=ids).loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    assert repeats_bit_for_bit_on_two_threads(gradients)


def test_set_noise_distribution_sets_log_q_and_the_output_bias():
    model = tiny_model("nce")
    model.set_noise_distribution(zipf_log_q() + 3.0)  # normalised on the way in
    torch.testing.assert_close(model.noise_log_probs, zipf_log_q())
    torch.testing.assert_close(model.crit.out_layers[0].bias.detach(), zipf_log_q())
    with pytest.raises(ValueError, match="draws no noise"):
        tiny_model("full").set_noise_distribution(zipf_log_q())


# --------------------------------------------------------------------------------------------------
# 3. No [tokens, vocab] tensor in training
# --------------------------------------------------------------------------------------------------


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor produced by any aten op (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


@pytest.mark.parametrize("loss_type", ["full", "chunked", "adaptive", "nce", "ranking"])
def test_training_allocates_no_tokens_by_vocab_tensor_except_with_full(loss_type):
    """Two measures: the largest tensor any op produces (forward and backward), and the total size of the
    vocabulary-wide activations autograd keeps for backward (chunked blocks kept one after another would
    add up to [n, vocab] again); parameters (the [vocab, d] table) are not activations."""
    model = tiny_model(loss_type).train()
    ids, labels = batch()
    n_tokens = int((labels[:, 1:] != -100).sum())  # 55 scored tokens; d_model 32 < 55
    parameters = {param.data_ptr() for param in model.parameters()}
    saved = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if VOCAB in tensor.shape and tensor.data_ptr() not in parameters:
            saved[(tensor.data_ptr(), tensor.shape)] = tensor.numel()
        return tensor

    with LargestTensor() as recorder:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
    if loss_type == "full":  # the positive control: both measures do see the full logits
        assert recorder.largest >= n_tokens * VOCAB and sum(saved.values()) >= n_tokens * VOCAB
    else:  # the largest are the [vocab, d] table gradient and (chunked) one [chunk, vocab] block
        assert recorder.largest < n_tokens * VOCAB, recorder.largest
        assert sum(saved.values()) < n_tokens * VOCAB, sum(saved.values())


# --------------------------------------------------------------------------------------------------
# 4. Config, saving and loading
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"loss_type": "softmax"}, "loss_type"),
        ({"loss_type": "adaptive"}, "loss_type"),  # no cutoffs
        ({"loss_type": "nce", "cutoffs": [10], "adaptive": True}, "loss_type"),
        ({"loss_type": "full", "cutoffs": [10], "adaptive": True}, "loss_type"),
        ({"num_noise_samples": 0}, "num_noise_samples"),
        ({"noise_power": 1.5}, "noise_power"),
        ({"loss_chunk_size": 0}, "loss_chunk_size"),
    ],
)
def test_invalid_loss_settings_raise_naming_the_field(fields, field):
    with pytest.raises(ValueError, match=field):
        TransformerXLConfig(vocab_size=100, **fields)


def test_loss_type_defaults_to_what_the_cutoffs_mean():
    assert TransformerXLConfig(vocab_size=100).loss_type == "full"
    assert TransformerXLConfig(vocab_size=100, cutoffs=[10], adaptive=True).loss_type == "adaptive"


@pytest.mark.slow
def test_nce_model_saves_its_noise_and_code_and_evaluates_exactly_in_a_clean_process(
    tmp_path, forward_in_clean_process
):
    model = tiny_model("nce").eval()
    model.save_pretrained(tmp_path / "model")
    for sibling in ("sampled_losses.py", "linear_cross_entropy.py"):  # the copies the modeling file imports
        shipped = tmp_path / "model" / sibling
        assert not shipped.is_symlink() and shipped.read_bytes() == (PACKAGE / sibling).read_bytes()  # not a link
    assert torch.equal(load_file(tmp_path / "model" / "model.safetensors")["noise_log_probs"], zipf_log_q())
    ids, labels = batch()
    with torch.no_grad():
        expected = model(input_ids=ids, labels=labels).loss
    loss = forward_in_clean_process(
        tmp_path / "model", "AutoModelForCausalLM", {"input_ids": ids, "labels": labels}, output_name="loss"
    )
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)
