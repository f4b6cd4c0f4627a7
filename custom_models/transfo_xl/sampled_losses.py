# Copied from custom_models/nce_lm/sampled_losses.py: edit that file, then run
# python -m custom_models.check_copies --fix
"""Noise-contrastive losses and their noise distribution, shared by the NCE GPT-2 and Transformer-XL.

A model package ships flat and self-contained with its weights (trust_remote_code), so both packages hold
this file: `custom_models/nce_lm/sampled_losses.py` is the source, `custom_models/transfo_xl/sampled_losses.py`
its copy, kept equal by `python -m custom_models.check_copies` (`--fix` rewrites it). One implementation, one
set of tests (tests/custom_models/test_nce_lm.py, the k -> inf limit included).

Notation: scores `s(w, h)` (log Z already subtracted), noise `q`, k noise ids `n_j`,
`delta(w) = s(w, h) - log k - log q(w)`.
"""

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F

SAMPLED_LOSS_TYPES = ("nce", "ranking")

# ----------------------------------------------------------------------------------------------
# Noise distribution
# ----------------------------------------------------------------------------------------------


def count_tokens(sequences: Iterable[Iterable[int]], *, vocab_size: int) -> torch.Tensor:
    """Token counts `[V]` (float64) of a tokenised dataset: an iterable of id sequences (lists or
    tensors, e.g. a `datasets` column of `input_ids`). Ids equal to -100 are skipped."""
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    for sequence in sequences:
        ids = torch.as_tensor(sequence, dtype=torch.long).reshape(-1)
        ids = ids[ids != -100]
        if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f"token ids must lie in [0, {vocab_size}), got {ids.min()}..{ids.max()}")
        counts += torch.bincount(ids, minlength=vocab_size).to(torch.float64)
    return counts


def noise_log_probs_from_counts(
    counts: torch.Tensor, *, noise_power: float = 1.0, smoothing: float = 1.0
) -> torch.Tensor:
    """`log q` `[V]` (float32) with `q ∝ (counts + smoothing) ** noise_power`.

    Add-`smoothing` keeps `log q` finite for ids never seen in the counts (a target with q = 0
    would get an infinite correction). `noise_power=0.75` is word2vec's flattened unigram; the
    loss corrects with this same q, so any power gives a consistent estimator.

    >>> noise_log_probs_from_counts(torch.tensor([3.0, 0.0]), smoothing=1.0).exp()
    tensor([0.8000, 0.2000])
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.dim() != 1 or (counts < 0).any() or not torch.isfinite(counts).all():
        raise ValueError("counts must be a 1-D tensor of finite, non-negative values")
    if not 0.0 < noise_power <= 1.0:
        raise ValueError(f"noise_power must lie in (0, 1], got {noise_power!r}")
    if smoothing < 0 or (smoothing == 0 and (counts == 0).any()):
        raise ValueError(f"smoothing must be > 0 when some counts are zero, got {smoothing!r}")
    log_weights = noise_power * torch.log(counts + smoothing)
    return (log_weights - torch.logsumexp(log_weights, 0)).float()


def normalised_noise_log_probs(noise_log_probs: torch.Tensor, *, vocab_size: int) -> torch.Tensor:
    """Checks a user-given `log q` (finite, `[vocab_size]`) and renormalises it: float64 `[V]`."""
    log_q = torch.as_tensor(noise_log_probs, dtype=torch.float64)
    if log_q.shape != (vocab_size,) or not torch.isfinite(log_q).all():
        raise ValueError(f"noise_log_probs must be finite with shape ({vocab_size},)")
    return log_q - torch.logsumexp(log_q, 0)


def _build_alias_table(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Vose's alias method: O(V) set-up, then O(1) per sample. Returns `(accept [V] float64,
    alias [V] long)`: draw `i` uniformly, keep it with probability `accept[i]`, else take
    `alias[i]`.

    >>> accept, alias = _build_alias_table(torch.tensor([0.5, 0.25, 0.25]))
    >>> accept.tolist(), alias.tolist()
    ([1.0, 0.75, 0.75], [0, 0, 0])
    """
    num = probs.numel()
    scaled = (probs.double() * num / probs.double().sum()).tolist()
    accept, alias = [1.0] * num, list(range(num))
    small = [i for i, p in enumerate(scaled) if p < 1.0]
    large = [i for i, p in enumerate(scaled) if p >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        accept[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    # Whatever is left has mass 1 up to rounding: accept[i] stays 1.0.
    return torch.tensor(accept, dtype=torch.float64), torch.tensor(alias, dtype=torch.long)


class AliasSampler:
    """iid draws (with replacement) from `q = exp(log_q)` with a private generator.

    The generator is seeded with `seed` on first use on a device (Trainer only checkpoints the global
    RNGs; save `generator(...).get_state()` for a bit-identical resume). The alias table is rebuilt
    only when `log_q` changes (a new tensor, or an in-place update, which bumps `_version`).
    """

    def __init__(self) -> None:
        self._generator: torch.Generator | None = None
        self._table: tuple | None = None

    def generator(self, device: torch.device, *, seed: int) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(seed)
        return self._generator

    def sample(self, log_q: torch.Tensor, shape: tuple[int, ...], *, seed: int) -> torch.Tensor:
        """`shape` long tensor of ids drawn from `exp(log_q)`, on the device of `log_q`."""
        key = (log_q.device, log_q.data_ptr(), log_q._version)
        if self._table is None or self._table[0] != key:
            accept, alias = _build_alias_table(log_q.detach().double().exp().cpu())
            self._table = (key, accept.to(log_q.device), alias.to(log_q.device))
        _, accept, alias = self._table
        generator = self.generator(log_q.device, seed=seed)
        index = torch.randint(0, accept.numel(), shape, device=log_q.device, generator=generator)
        uniform = torch.rand(shape, device=log_q.device, dtype=torch.float64, generator=generator)
        return torch.where(uniform < accept[index], index, alias[index])


# ----------------------------------------------------------------------------------------------
# Rows of the output table
# ----------------------------------------------------------------------------------------------


def table_rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """`table[ids]`: rows `[..., d]` of a `[V, d]` table (or entries `[...]` of a `[V]` one, an output bias), with a
    backward whose sums do not depend on thread timing, so the same run repeats bit for bit.

    `table[ids]` differentiates through `index_put_(accumulate=True)`, which on CPU adds the gradients of a repeated
    id with atomic adds from every thread: their order, and so the last bits, change from run to run (two NCE tiny
    runs on 2 threads ended 8.6e-6 apart after 30 steps). `F.embedding`'s backward sums each id's gradients in the
    order of `ids`, each row owned by one thread; measured no slower.
    """
    if table.dim() == 1:
        return F.embedding(ids, table.unsqueeze(1)).squeeze(-1)
    return F.embedding(ids, table)


# ----------------------------------------------------------------------------------------------
# Loss functions (per token, fp32 or fp64; no reduction)
# ----------------------------------------------------------------------------------------------


def nce_loss(
    target_scores: torch.Tensor,
    noise_scores: torch.Tensor,
    log_q_target: torch.Tensor,
    log_q_noise: torch.Tensor,
    num_noise_samples: int,
    noise_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary NCE loss per token (Gutmann & Hyvärinen 2012; Mnih & Teh 2012).

    `loss[n] = -logsigmoid(delta_t[n]) - sum_j noise_weights[n, j] * logsigmoid(-delta_n[n, j])`,
    `delta = score - log(k) - log q`, with k = `num_noise_samples` (the count the noise was
    drawn with). The noise terms are summed, never averaged: averaging breaks the k -> inf limit
    in which the gradient becomes the maximum-likelihood gradient of a normalised model.

    Shapes: `target_scores [n]`, `log_q_target [n]`, `noise_scores [n, m]` with `log_q_noise`
    and `noise_weights` broadcastable to it. `noise_weights` defaults to 1 (each sampled id counts
    once); 0 removes a (token, noise) pair (accidental hits); `k q(w)` over all ids `w` gives the
    exact expectation over the noise distribution. Computed in at least fp32, with logsigmoid
    (never `exp(s)`: rare words have `-log q` of 15-20).
    """
    dtype = torch.promote_types(target_scores.dtype, torch.float32)
    log_k = math.log(num_noise_samples)
    delta_target = target_scores.to(dtype) - (log_q_target.to(dtype) + log_k)
    # -delta for the noise in one pass over [n, m] (the offset is usually a [k] vector).
    minus_delta_noise = (log_q_noise.to(dtype) + log_k) - noise_scores.to(dtype)
    noise_terms = F.logsigmoid(minus_delta_noise)  # [n, m], = -(loss term)
    if noise_weights is not None:
        noise_terms = noise_terms * noise_weights.to(dtype)
    return -F.logsigmoid(delta_target) - noise_terms.sum(-1)


def ranking_loss(
    target_scores: torch.Tensor,
    noise_scores: torch.Tensor,
    log_q_target: torch.Tensor,
    log_q_noise: torch.Tensor,
    num_noise_samples: int,
    noise_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Ranking NCE / sampled softmax loss per token (Ma & Collins 2018, Jozefowicz et al. 2016).

    `loss[n] = -log softmax([delta_t[n], delta_n[n, 1..k]])[0]` with `delta = score - log(k q)`
    (the `log k` cancels; kept so both losses see the same scores). `noise_mask [n, k]` (True =
    drop) sets those noise logits to -inf: removing accidental hits, the usual choice here.
    """
    dtype = torch.promote_types(target_scores.dtype, torch.float32)
    log_k = math.log(num_noise_samples)
    delta_target = target_scores.to(dtype) - log_q_target.to(dtype) - log_k
    delta_noise = noise_scores.to(dtype) - log_q_noise.to(dtype) - log_k
    delta_noise = torch.broadcast_to(delta_noise, (*delta_target.shape, delta_noise.shape[-1]))
    if noise_mask is not None:
        delta_noise = delta_noise.masked_fill(noise_mask, float("-inf"))
    candidates = torch.cat([delta_target.unsqueeze(-1), delta_noise], dim=-1)  # [n, 1 + k]
    return torch.logsumexp(candidates, dim=-1) - delta_target


def sampled_loss(
    loss_type: str,
    target_scores: torch.Tensor,
    noise_scores: torch.Tensor,
    log_q_target: torch.Tensor,
    log_q_noise: torch.Tensor,
    num_noise_samples: int,
    hits: torch.Tensor | None = None,
) -> torch.Tensor:
    """`nce_loss` or `ranking_loss` per token; `hits [n, k]` (True = the noise id is this token's
    target) are removed when given: a zero term for NCE, a -inf logit for ranking."""
    if loss_type == "nce":
        weights = None if hits is None else (~hits).to(torch.float32)
        return nce_loss(target_scores, noise_scores, log_q_target, log_q_noise, num_noise_samples, weights)
    if loss_type == "ranking":
        return ranking_loss(target_scores, noise_scores, log_q_target, log_q_noise, num_noise_samples, hits)
    raise ValueError(f"loss_type must be one of {SAMPLED_LOSS_TYPES}, got {loss_type!r}")


def log_partition_statistics(log_z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Self-normalisation diagnostics of per-token `log Z(h) = logsumexp_w s(w, h)` `[n]` (detached):
    mean, std, and the fraction of tokens with `|log Z| > 1` (0, 0, 0 for a self-normalised model)."""
    log_z = log_z.detach().float()
    return {
        "log_partition_mean": log_z.mean(),
        "log_partition_std": log_z.std(correction=0),
        "log_partition_outlier_fraction": (log_z.abs() > 1).float().mean(),
    }
