"""Fused linear cross-entropy: the exact softmax loss of `F.linear(hidden, weight, bias)` without its logits.

A model package ships flat and self-contained with its weights (trust_remote_code), so both packages hold
this file: `custom_models/nce_lm/linear_cross_entropy.py` is the source, `custom_models/transfo_xl/` holds its
copy (as `sampled_losses.py`). Tests: tests/custom_models/test_linear_cross_entropy.py.

Why: with a large vocabulary V the `[tokens, V]` logits, their softmax and their gradient dominate a
training step's memory. Here the tokens are taken `chunk_size` at a time; each block's logits, log-sum-exp,
loss AND gradients (with respect to the hidden states, the weight and the bias) are computed in the forward
pass, the weight gradient accumulated into one `[V, d]` buffer, and the block is freed. Backward only
scales the saved gradients by the incoming one. The idea of Liger Kernel's fused linear cross-entropy and of
Cut Cross-Entropy (Wijmans et al. 2024), in plain PyTorch, so it runs on CPUs as well as GPUs.

A model whose input embedding IS the output weight (tied) would still hold two `[V, d]` gradients at once:
ours, and the one the embedding lookup's backward builds, which autograd then adds into ours. Passing one
`SharedTableGradient` to `linear_cross_entropy` and to `shared_table_lookup` (the input lookup) makes the
lookup add its rows into our buffer instead: one `[V, d]` gradient for the table.

Axis names: `n` tokens, `c` tokens of one block, `d` hidden size, `V` vocabulary.
"""

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
REDUCTIONS = ("mean", "sum")


def default_chunk_size(*, vocab_size: int, hidden_size: int) -> int:
    """Tokens per block when the config leaves it to us: chosen from the vocabulary and the width.

    A block's `[c, V]` float32 scores should cost no more than the `[V, d]` weight gradient that every exact
    loss holds anyway (c <= d), so the loss stays within about twice that floor; within that bound, larger
    blocks are faster on CPUs, because each block adds its `[V, c] x [c, d]` product into the whole `[V, d]`
    gradient (at 267,735 words x 256, blocks of 64 tokens ran at 0.7x the speed of the full softmax, blocks
    of 256 at 1.0x). So c is the width rounded down to a power of two, at least 32, and for small
    vocabularies enough tokens for 2**20 scores (one block for a whole batch of a tiny model).

    >>> default_chunk_size(vocab_size=267_735, hidden_size=256), default_chunk_size(vocab_size=500, hidden_size=32)
    (256, 4096)
    """
    rows = max(1 << (hidden_size.bit_length() - 1), 32, math.ceil(2**20 / vocab_size))
    return 1 << (rows - 1).bit_length()


class SharedTableGradient:
    """The weight gradient of one `linear_cross_entropy` call, handed to the `shared_table_lookup` of the same
    (tied) table in the same forward pass.

    Autograd runs the loss's backward before the lookup's (the lookup feeds the network that feeds the loss),
    so the loss leaves its `[V, d]` gradient here, as well as returning it to autograd, and the lookup adds its
    `[tokens, d]` rows into that same tensor and returns no gradient of its own. Autograd stores the table's
    gradient only after both have run (it waits for every use of a parameter), so it stores the sum."""

    def __init__(self) -> None:
        self.weight_gradient: torch.Tensor | None = None

    def take(self) -> torch.Tensor | None:
        """The loss's weight gradient, once (the reference is dropped: autograd can then keep the tensor itself
        as `.grad` instead of copying it)."""
        gradient, self.weight_gradient = self.weight_gradient, None
        return gradient


def shared_table_lookup(ids: torch.Tensor, weight: torch.Tensor, shared: SharedTableGradient) -> torch.Tensor:
    """`F.embedding(ids, weight)` whose backward adds its rows into the weight gradient that the
    `linear_cross_entropy` given `shared` left (else, when that loss did not run backward, it builds the
    usual dense gradient). ids `[...]` -> `[..., d]`."""
    return _SharedTableLookup.apply(weight, ids, shared)


class _SharedTableLookup(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, ids, shared):
        ctx.save_for_backward(ids)
        ctx.shared, ctx.weight_shape = shared, weight.shape
        return F.embedding(ids, weight)

    @staticmethod
    def backward(ctx, grad_rows):
        (ids,) = ctx.saved_tensors
        gradient = ctx.shared.take()
        if not ctx.needs_input_grad[0]:
            return None, None, None
        rows = grad_rows.reshape(-1, ctx.weight_shape[1])
        if gradient is not None:  # added into the loss's gradient, which autograd already holds
            gradient.index_add_(0, ids.reshape(-1), rows.to(gradient.dtype))
            return None, None, None
        return rows.new_zeros(ctx.weight_shape).index_add_(0, ids.reshape(-1), rows), None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    chunk_size: int,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    shared_table: SharedTableGradient | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`F.cross_entropy(F.linear(hidden, weight, bias).float(), targets, ignore_index=-100,
    label_smoothing=..., reduction=...)` and the log-sum-exp of every counted token, never holding more than
    one `[chunk_size, V]` block of logits.

    hidden `[n, d]`, weight `[V, d]`, bias `[V]` or None, targets `[n]` (-100: ignored). Returns the loss
    (float32 scalar: "mean" over counted tokens, 0 with zero gradients when none counts, where
    `F.cross_entropy` gives NaN; or "sum") and `log_z` `[counted]` (float32, detached), the log-sum-exp of
    each counted token's logits in order. Scores, losses and gradients are accumulated in float32 whatever
    the dtype of the inputs (bf16 included). `shared_table`: `weight` is also the input embedding, looked up
    by `shared_table_lookup` with the same object (see `SharedTableGradient`).

    Gradients are computed in the forward pass only where autograd needs them (grad mode on and the input
    requires grad); under `torch.no_grad()` or for frozen inputs nothing is spent on them. The backward may
    run once (the saved gradients are scaled in place): `retain_graph=True` and a second backward raise.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"linear_cross_entropy: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"linear_cross_entropy: chunk_size must be a positive int, got {chunk_size!r}")
    if hidden.dim() != 2 or targets.shape != hidden.shape[:1]:
        raise ValueError(f"linear_cross_entropy: hidden [n, d] and targets [n], got {hidden.shape}, {targets.shape}")
    inputs = (hidden, weight, bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return _FusedLinearCrossEntropy.apply(
            hidden, weight, bias, targets, chunk_size, label_smoothing, reduction, shared_table
        )
    loss, log_z, _ = _blocks(*inputs, targets, chunk_size, label_smoothing, reduction, needs_grad=(False,) * 3)
    return loss, log_z


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Gradients in the forward pass; backward scales them by the incoming gradient of the loss."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size, label_smoothing, reduction, shared_table):
        needs_grad = tuple(ctx.needs_input_grad[:3])
        loss, log_z, grads = _blocks(
            hidden, weight, bias, targets, chunk_size, label_smoothing, reduction, needs_grad=needs_grad
        )
        ctx.grads, ctx.dtypes = grads, tuple(None if t is None else t.dtype for t in (hidden, weight, bias))
        ctx.shared_table = shared_table
        ctx.mark_non_differentiable(log_z)
        return loss, log_z

    @staticmethod
    def backward(ctx, grad_loss, grad_log_z):
        if ctx.grads is None:
            raise RuntimeError("linear_cross_entropy: backward ran twice; its gradients were scaled in place")
        grads, ctx.grads = ctx.grads, None
        grad_hidden, grad_weight, grad_bias = (
            None if grad is None else grad.mul_(grad_loss.to(grad.dtype)).to(dtype)
            for grad, dtype in zip(grads, ctx.dtypes)
        )
        if ctx.shared_table is not None:
            ctx.shared_table.weight_gradient = grad_weight
        return grad_hidden, grad_weight, grad_bias, None, None, None, None, None


def _blocks(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    chunk_size: int,
    label_smoothing: float,
    reduction: str,
    *,
    needs_grad: tuple[bool, bool, bool],
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor | None, ...]]:
    """The loss, `log_z` `[counted]` and the gradients of the loss (hidden, weight, bias; None where not
    needed), block by block over the counted tokens."""
    need_hidden, need_weight, need_bias = needs_grad[0], needs_grad[1], needs_grad[2] and bias is not None
    rows = (targets != IGNORE_INDEX).nonzero().squeeze(1)  # [counted]
    counted, vocab = rows.numel(), weight.shape[0]
    scale = 1.0 / max(counted, 1) if reduction == "mean" else 1.0  # d loss / d token loss
    f32 = {"dtype": torch.float32, "device": hidden.device}
    grad_hidden = torch.zeros_like(hidden) if need_hidden else None
    grad_weight = torch.zeros(weight.shape, **f32) if need_weight else None
    grad_bias = torch.zeros(vocab, **f32) if need_bias else None
    total, log_z = torch.zeros((), **f32), []
    for block_rows in rows.split(chunk_size):
        hidden_c, targets_c = hidden[block_rows], targets[block_rows]  # [c, d], [c]
        scores = F.linear(hidden_c, weight, bias).float()  # [c, V]: a fresh tensor, changed in place below
        target_scores = scores.gather(1, targets_c[:, None]).squeeze(1)  # [c]
        mean_scores = scores.mean(1) if label_smoothing else None  # [c]
        top = scores.amax(1, keepdim=True)  # [c, 1]
        sums = scores.sub_(top).exp_().sum(1, keepdim=True)  # scores now hold exp(s - top)
        lse = (top + sums.log()).squeeze(1)  # [c]
        token_losses = lse - target_scores
        if label_smoothing:
            token_losses = (1 - label_smoothing) * token_losses + label_smoothing * (lse - mean_scores)
        total += token_losses.sum()
        log_z.append(lse)
        if not (need_hidden or need_weight or need_bias):
            continue
        grad_scores = scores.div_(sums)  # softmax [c, V]; d token loss / d scores below
        grad_scores[torch.arange(len(targets_c), device=hidden.device), targets_c] -= 1 - label_smoothing
        if label_smoothing:
            grad_scores -= label_smoothing / vocab
        grad_scores *= scale
        grad_scores_in = grad_scores.to(weight.dtype)
        if need_hidden:
            grad_hidden[block_rows] = (grad_scores_in @ weight).to(hidden.dtype)  # [c, V] x [V, d]
        if need_weight and weight.dtype == torch.float32:
            grad_weight.addmm_(grad_scores.T, hidden_c.float())  # [V, c] x [c, d], in place
        elif need_weight:
            grad_weight += grad_scores_in.T @ hidden_c.to(weight.dtype)  # low-precision product, f32 sum
        if need_bias:
            grad_bias += grad_scores.sum(0)
        # Freed before the next block's scores exist: otherwise two [c, V] blocks are alive at once.
        del scores, grad_scores, grad_scores_in
    loss = total * scale
    log_z = torch.cat(log_z) if log_z else torch.zeros(0, **f32)
    return loss, log_z, (grad_hidden, grad_weight, grad_bias)
