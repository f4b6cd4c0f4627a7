"""The fused linear cross-entropy (`custom_models/nce_lm/linear_cross_entropy.py`) against
`F.cross_entropy(F.linear(h, W, b), y)`: loss and every gradient, block edge cases, frozen inputs, no_grad,
tied weights, gradient accumulation and bf16.

Tolerance 1e-5 (the issue's bound) in float32: both sides sum the same float32 terms in a different order,
which moves a ~4.6 loss by about 1e-6; a wrong scale, row or smoothing term moves it by > 1e-2.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from custom_models.nce_lm.linear_cross_entropy import (
    SharedTableGradient,
    default_chunk_size,
    linear_cross_entropy,
    shared_table_lookup,
)

VOCAB, WIDTH, TOKENS = 97, 16, 23
TOL = {"rtol": 1e-5, "atol": 1e-5}


def inputs(*, ignored: slice | None = None, bias: bool = True, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(TOKENS, WIDTH, generator=generator, requires_grad=True)
    weight = torch.randn(VOCAB, WIDTH, generator=generator).mul(0.3).requires_grad_(True)
    bias_ = torch.randn(VOCAB, generator=generator).requires_grad_(True) if bias else None
    targets = torch.randint(0, VOCAB, (TOKENS,), generator=generator)
    if ignored is not None:
        targets[ignored] = -100
    return hidden, weight, bias_, targets


def gradients(loss: torch.Tensor, tensors) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, [t for t in tensors if t is not None]))


def reference(hidden, weight, bias, targets, **kwargs) -> torch.Tensor:
    return F.cross_entropy(F.linear(hidden, weight, bias), targets, ignore_index=-100, **kwargs)


@pytest.mark.parametrize(
    ("chunk_size", "ignored", "bias", "kwargs"),
    [
        (5, None, True, {}),  # several blocks, the last one short
        (64, None, True, {}),  # the batch is smaller than one block
        (4, slice(4, 12), True, {}),  # two blocks' worth of ignored tokens between counted ones
        (7, slice(0, 20), False, {}),  # only 3 tokens count, no bias
        (5, slice(3, 9), True, {"label_smoothing": 0.1}),
        (5, slice(3, 9), True, {"reduction": "sum"}),
    ],
)
def test_loss_and_gradients_equal_cross_entropy_of_the_full_logits(chunk_size, ignored, bias, kwargs):
    hidden, weight, bias_, targets = inputs(ignored=ignored, bias=bias)
    tensors = (hidden, weight, bias_)
    expected = reference(*tensors, targets, **kwargs)
    loss, log_z = linear_cross_entropy(*tensors, targets, chunk_size=chunk_size, **kwargs)
    torch.testing.assert_close(loss, expected, **TOL)
    for ours, theirs in zip(gradients(loss, tensors), gradients(expected, tensors), strict=True):
        torch.testing.assert_close(ours, theirs, **TOL)
    counted = targets != -100
    torch.testing.assert_close(log_z, torch.logsumexp(F.linear(hidden, weight, bias_)[counted], 1).detach(), **TOL)


def test_loss_is_scaled_by_the_incoming_gradient():
    """backward multiplies the saved gradients by d(outer)/d(loss), here 3 (as Trainer's 1 / accumulation)."""
    hidden, weight, bias, targets = inputs()
    expected = gradients(3 * reference(hidden, weight, bias, targets), (hidden, weight, bias))
    got = gradients(3 * linear_cross_entropy(hidden, weight, bias, targets, chunk_size=5)[0], (hidden, weight, bias))
    for ours, theirs in zip(got, expected, strict=True):
        torch.testing.assert_close(ours, theirs, **TOL)


def test_all_tokens_ignored_gives_zero_loss_and_zero_gradients():
    hidden, weight, bias, targets = inputs(ignored=slice(None))
    loss, log_z = linear_cross_entropy(hidden, weight, bias, targets, chunk_size=5)
    loss.backward()
    assert loss.item() == 0.0 and log_z.numel() == 0  # F.cross_entropy gives NaN here
    assert all(torch.count_nonzero(t.grad) == 0 for t in (hidden, weight, bias))


def test_tied_weight_receives_the_embedding_and_the_output_gradient():
    """A toy LM whose output weight is its input embedding: the fused loss adds its gradient to the one
    coming through the embedding lookup, as autograd does for F.linear."""
    generator = torch.Generator().manual_seed(1)
    table = torch.randn(VOCAB, WIDTH, generator=generator).requires_grad_(True)
    ids = torch.randint(0, VOCAB, (TOKENS + 1,), generator=generator)

    def grad_of(loss_fn) -> torch.Tensor:
        hidden = torch.tanh(F.embedding(ids[:-1], table))  # [n, d]
        (grad,) = torch.autograd.grad(loss_fn(hidden), table)
        return grad

    expected = grad_of(lambda h: reference(h, table, None, ids[1:]))
    got = grad_of(lambda h: linear_cross_entropy(h, table, None, ids[1:], chunk_size=4)[0])
    torch.testing.assert_close(got, expected, **TOL)
    output_only = grad_of(lambda h: linear_cross_entropy(h.detach(), table, None, ids[1:], chunk_size=4)[0])
    assert (got - output_only).abs().max() > 1e-3  # the embedding's share is really there


class TableSizedTensors(TorchDispatchMode):
    """Counts the distinct tensors of the table's shape that aten ops produce (in-place results count once),
    other than the table and the gradient it already holds."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.shape, self.pointers = table.shape, set()
        self.existing = {tensor.data_ptr() for tensor in (table, table.grad) if tensor is not None}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and tensor.shape == self.shape:
                self.pointers.add(tensor.data_ptr())
        return out

    @property
    def count(self) -> int:
        return len(self.pointers - self.existing)


@pytest.mark.parametrize("share", [True, False])  # False: the positive control (autograd's own sum)
def test_a_shared_table_lookup_adds_its_rows_into_the_loss_gradient(share):
    """With one `SharedTableGradient` the tied table's gradient is the loss's own buffer plus the lookup's
    rows: the same gradient as autograd's sum, in one [vocab, d] tensor instead of two, over two backward
    passes (gradient accumulation)."""
    generator = torch.Generator().manual_seed(1)
    table = torch.randn(VOCAB, WIDTH, generator=generator).requires_grad_(True)
    ids = torch.randint(0, VOCAB, (TOKENS + 1,), generator=generator)
    expected = torch.autograd.grad(reference(torch.tanh(F.embedding(ids[:-1], table)), table, None, ids[1:]), table)[0]
    for _ in range(2):
        shared = SharedTableGradient() if share else None
        with TableSizedTensors(table) as recorder:
            embedded = shared_table_lookup(ids[:-1], table, shared) if share else F.embedding(ids[:-1], table)
            hidden = torch.tanh(embedded)
            loss, _ = linear_cross_entropy(hidden, table, None, ids[1:], chunk_size=4, shared_table=shared)
            loss.backward()
        assert recorder.count == 1 if share else recorder.count >= 2, recorder.count  # control: 3 here
    torch.testing.assert_close(table.grad, 2 * expected, **TOL)


def test_a_shared_table_lookup_without_its_loss_builds_its_own_gradient():
    """The lookup whose loss was not given the same object (or did not run backward) adds nothing anywhere:
    it returns the usual dense gradient."""
    generator = torch.Generator().manual_seed(2)
    table = torch.randn(VOCAB, WIDTH, generator=generator).requires_grad_(True)
    ids = torch.randint(0, VOCAB, (TOKENS + 1,), generator=generator)
    expected = torch.autograd.grad(reference(torch.tanh(F.embedding(ids[:-1], table)), table, None, ids[1:]), table)[0]
    hidden = torch.tanh(shared_table_lookup(ids[:-1], table, SharedTableGradient()))
    (got,) = torch.autograd.grad(linear_cross_entropy(hidden, table, None, ids[1:], chunk_size=4)[0], table)
    torch.testing.assert_close(got, expected, **TOL)


def test_gradients_accumulate_over_two_backward_passes():
    hidden, weight, bias, targets = inputs()
    for _ in range(2):
        linear_cross_entropy(hidden, weight, bias, targets, chunk_size=5)[0].backward()
    expected = gradients(2 * reference(hidden, weight, bias, targets), (hidden, weight, bias))
    for tensor, theirs in zip((hidden, weight, bias), expected, strict=True):
        torch.testing.assert_close(tensor.grad, theirs, **TOL)


def test_frozen_inputs_get_no_gradient_and_cost_none(monkeypatch):
    """A frozen output layer (LoRA): only the hidden states get a gradient, and none is computed for the
    weight (the [V, c] x [c, d] product is never run)."""
    hidden, weight, bias, targets = inputs()
    weight.requires_grad_(False)
    bias.requires_grad_(False)
    products = []
    real_addmm = torch.Tensor.addmm_
    monkeypatch.setattr(torch.Tensor, "addmm_", lambda *a, **k: products.append(1) or real_addmm(*a, **k))
    loss, _ = linear_cross_entropy(hidden, weight, bias, targets, chunk_size=5)
    loss.backward()
    torch.testing.assert_close(hidden.grad, gradients(reference(hidden, weight, bias, targets), [hidden])[0], **TOL)
    assert weight.grad is None and bias.grad is None and not products


def test_no_grad_computes_the_loss_only():
    hidden, weight, bias, targets = inputs()
    with torch.no_grad():
        loss, log_z = linear_cross_entropy(hidden, weight, bias, targets, chunk_size=5)
        expected = reference(hidden, weight, bias, targets)
    assert loss.grad_fn is None and not log_z.requires_grad
    torch.testing.assert_close(loss, expected, **TOL)


def test_a_second_backward_is_refused():
    hidden, weight, bias, targets = inputs()
    loss, _ = linear_cross_entropy(hidden, weight, bias, targets, chunk_size=5)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        loss.backward()


def test_bf16_inputs_accumulate_in_float32():
    """bf16 hidden states and weight: the loss is float32 and close to the float32 loss of the same
    (rounded) values; bf16 products round each score to ~3 significant digits, hence 2e-2."""
    hidden, weight, bias, targets = inputs()
    low = [t.detach().bfloat16().requires_grad_(True) for t in (hidden, weight, bias)]
    loss, _ = linear_cross_entropy(*low, targets, chunk_size=5)
    loss.backward()
    expected = reference(*(t.detach().float().requires_grad_(True) for t in low), targets)
    assert loss.dtype == torch.float32 and low[1].grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss, expected, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"chunk_size": 0}, "chunk_size"), ({"chunk_size": 4, "reduction": "none"}, "reduction")],
)
def test_invalid_arguments_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        linear_cross_entropy(*inputs(), **kwargs)


def test_default_chunk_size_follows_vocabulary_and_width():
    assert default_chunk_size(vocab_size=267_735, hidden_size=256) == 256  # d
    assert default_chunk_size(vocab_size=50_257, hidden_size=768) == 512  # d rounded down to a power of two
    assert default_chunk_size(vocab_size=500, hidden_size=32) == 4096  # at least 2**20 scores per block
