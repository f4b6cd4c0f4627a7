"""Transformer-XL (Dai et al. 2019, arXiv 1901.02860) as a transformers 5.x model.

A decoder-only language model whose layers also attend to a memory of the previous segment's layer
inputs (no gradient flows into it) and score keys by their relative distance, so a long stream can be
processed segment by segment and every token still sees up to `mem_len` earlier positions per layer.
Large vocabularies use adaptive input and an adaptive softmax (`cutoffs`, `div_val`), as the paper's
WikiText-103 models and the 4.x `transfo-xl-wt103` checkpoint do, or train one full output table with a
cheaper loss (`loss_type`: a chunked exact loss, NCE or ranking NCE; see `TransformerXLForCausalLM`).

Axis names used in shape comments:
    b       batch
    h       attention heads (`n_head`)
    q_len   positions of the current segment (queries)
    m_len   positions of memory fed in (0 without memory)
    k_len   keys = m_len + q_len, ordered [memory; segment]
    n_pos   relative distances that get their own encoding: min(k_len, clamp_len + 1)
    d_model residual width; d_head width of one head; d_inner feed-forward width

Layout: batch-first everywhere. `mems` is a tuple of `n_layer` tensors `[b, m_len, d_model]` in the
compute dtype; `mems[l]` holds the last `mem_len` INPUTS of layer `l` (so `mems[0]` are scaled
embeddings), detached. `mems=None` means no memory at all (transformers 4.x instead attended to
`mem_len` zero vectors). Parameter names equal those of transformers 4.x `TransfoXLLMHeadModel`.
"""

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, GradientCheckpointingLayer, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_transfo_xl import TransformerXLConfig
from .linear_cross_entropy import (
    SharedTableGradient,
    default_chunk_size,
    linear_cross_entropy,
    shared_table_lookup,
)
from .sampled_losses import (
    SAMPLED_LOSS_TYPES,
    AliasSampler,
    log_partition_statistics,
    normalised_noise_log_probs,
    sampled_loss,
    table_rows,
)

Mems = tuple[torch.Tensor, ...]


# ------------------------------------------------------------------------------------------------------
# Small blocks
# ------------------------------------------------------------------------------------------------------


def _cluster_indices(ids: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """Positions of the flat `ids` that fall in the cluster `[low, high)`."""
    return ((ids >= low) & (ids < high)).nonzero().squeeze(1)


class TransformerXLAdaptiveEmbedding(nn.Module):
    """Token embedding in `d_model` dimensions (the model then scales it by sqrt(d_model), `emb_scale`, as
    the paper's code does, so its scale matches the residual).

    Adaptive input (Baevski & Auli 2019): with `div_val > 1`, cluster i of the vocabulary (see
    `TransformerXLConfig.cutoffs`) has its own table of width `d_embed // div_val**i` and its own
    projection to `d_model` (`emb_projs.i`), so rare words cost fewer parameters. With `div_val == 1`
    there is one table, projected only when `d_embed != d_model`; without cutoffs that is a plain
    embedding. Parameter names are those of 4.x (`emb_layers.i.weight`, `emb_projs.i`).
    """

    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__()
        self.vocab_size, self.d_model = config.vocab_size, config.d_model
        self.bounds = config.cluster_bounds
        self.emb_scale = config.d_model**0.5
        if config.div_val == 1:
            self.emb_layers = nn.ModuleList([nn.Embedding(config.vocab_size, config.d_embed)])
            widths = [config.d_embed] if config.d_embed != config.d_model else []
        else:
            sizes = [high - low for low, high in zip(self.bounds, self.bounds[1:])]
            widths = config.cluster_embed_dims()
            self.emb_layers = nn.ModuleList([nn.Embedding(size, width) for size, width in zip(sizes, widths)])
        self.emb_projs = nn.ParameterList([nn.Parameter(torch.empty(config.d_model, width)) for width in widths])

    def forward(self, input_ids: torch.Tensor, *, shared_gradient: SharedTableGradient | None = None) -> torch.Tensor:
        """[...] ids -> [..., d_model] projected embeddings, NOT yet scaled (what `inputs_embeds` means).
        `shared_gradient` (one table only): the table is also the output weight of the fused exact loss given
        the same object, and this lookup's gradient is added into that loss's (`linear_cross_entropy.py`)."""
        if len(self.emb_layers) == 1:
            table = self.emb_layers[0]
            if shared_gradient is None:
                embedded = table(input_ids)
            else:
                embedded = shared_table_lookup(input_ids, table.weight, shared_gradient)
            return F.linear(embedded, self.emb_projs[0]) if len(self.emb_projs) else embedded
        flat = input_ids.reshape(-1)
        if flat.numel() and not 0 <= int(flat.min()) <= int(flat.max()) < self.vocab_size:
            raise IndexError(f"TransformerXL: token ids must be in [0, {self.vocab_size})")
        weight = self.emb_projs[0]
        embedded = torch.zeros(flat.numel(), self.d_model, dtype=weight.dtype, device=weight.device)
        for cluster, (table, proj) in enumerate(zip(self.emb_layers, self.emb_projs)):
            low, high = self.bounds[cluster], self.bounds[cluster + 1]
            index = _cluster_indices(flat, low, high)
            if index.numel():
                embedded = embedded.index_copy(0, index, F.linear(table(flat[index] - low), proj))
        return embedded.view(*input_ids.shape, self.d_model)


class TransformerXLPositionalEmbedding(nn.Module):
    """Sinusoid encodings of relative distances 0..n_pos-1: row p is [sin(p * f), cos(p * f)].

    Angles are computed in float32 from a freshly built `inv_freq`, whatever dtype the module was cast
    to: bf16 holds integers exactly only up to 256 and would also round the frequencies. The
    `inv_freq` buffer is kept (same values) so state dicts match transformers 4.x.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.register_buffer("inv_freq", self.compute_inv_freq(d_model), persistent=True)

    @staticmethod
    def compute_inv_freq(d_model: int, device: torch.device | None = None) -> torch.Tensor:
        return 1.0 / (10000 ** (torch.arange(0.0, d_model, 2.0, device=device) / d_model))

    def forward(self, n_pos: int, *, clamp_len: int, device: torch.device) -> torch.Tensor:
        distance = torch.arange(n_pos, device=device, dtype=torch.float32)
        if clamp_len > 0:
            distance = distance.clamp(max=clamp_len)
        angles = torch.outer(distance, self.compute_inv_freq(self.d_model, device))  # [n_pos, d_model/2]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)  # [n_pos, d_model], float32


class TransformerXLFeedForward(nn.Module):
    """Position-wise feed-forward sub-block with its residual and LayerNorm (pre- or post-norm).

    `CoreNet` indices 0 and 3 carry the weights, as in 4.x (1 = ReLU, 2 and 4 = dropout).
    """

    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__()
        self.pre_lnorm = config.pre_lnorm
        self.CoreNet = nn.Sequential(
            nn.Linear(config.d_model, config.d_inner),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.d_inner, config.d_model),
            nn.Dropout(config.dropout),
        )
        self.layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_epsilon)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.pre_lnorm:
            return hidden + self.CoreNet(self.layer_norm(hidden))
        return self.layer_norm(hidden + self.CoreNet(hidden))


# ------------------------------------------------------------------------------------------------------
# Attention math
# ------------------------------------------------------------------------------------------------------


def relative_position_index(*, q_len: int, k_len: int, n_pos: int, device: torch.device | None = None) -> torch.Tensor:
    """Index `[q_len, k_len]` of the distance encoding used by query i and key j: min(m + i - j, n_pos - 1).

    Why: this replaces the paper's "relative shift" (pad, reshape, slice) by an explicit gather, which
    is exact for every visible pair and gives a plain additive bias that SDPA can take. Queries are
    the last q_len of the k_len keys, so query i sits at key position m + i with m = k_len - q_len.
    Pairs with j > m + i (the future) get index 0; the causal mask hides them. Distances beyond
    n_pos - 1 (only with clamp_len) share the last encoding, which is exactly what clamping means.

    Worked example, q_len=2, k_len=4 (m=2), n_pos=4:
        query 0 (key position 2): distances to keys 0..3 are 2, 1, 0, -1 -> [2, 1, 0, 0]
        query 1 (key position 3): distances to keys 0..3 are 3, 2, 1, 0  -> [3, 2, 1, 0]
    and with n_pos=2 (clamp_len=1) the same becomes [[1, 1, 0, 0], [1, 1, 1, 0]].
    """
    query_pos = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    key_pos = torch.arange(k_len, device=device)[None, :]
    return (query_pos - key_pos).clamp(min=0, max=n_pos - 1)  # [q_len, k_len]


def causal_memory_mask(
    *, q_len: int, k_len: int, window: int | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """Boolean mask `[q_len, k_len]`, True = hidden: keys after the query, and (with `window`) keys
    `window` or more positions back, so each query sees exactly `window` keys ending at itself
    (the `same_length` rule of the paper's code, window = mem_len)."""
    query_pos = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    key_pos = torch.arange(k_len, device=device)[None, :]
    distance = query_pos - key_pos
    mask = distance < 0
    if window is not None:
        mask = mask | (distance >= window)
    return mask


def relative_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    pos_key: torch.Tensor,
    content_bias: torch.Tensor,
    position_bias: torch.Tensor,
    mask: torch.Tensor,
    *,
    dropout_p: float = 0.0,
    output_attentions: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Relative-position attention of the paper (its eq. with terms a-d), computed in float32.

    score(i, j) = [(q_i + u) . k_j  +  (q_i + v) . W_R R_{dist(i, j)}] / sqrt(d_head)
    The first product (terms a + c) goes through SDPA as query.key; the second (terms b + d) is computed
    once per (query, distance) and gathered per (query, key) into an additive bias that also carries
    the mask. Everything runs in float32 (scores, mask, softmax) so bf16/fp16 models do not lose the
    position term or overflow; the result is cast back to the input dtype.

    Args:
        query: [b, h, q_len, d_head]; key, value: [b, h, k_len, d_head] (keys = [memory; segment]).
        pos_key: [h, n_pos, d_head], W_R applied to the encodings of distances 0..n_pos-1.
        content_bias (u), position_bias (v): [h, d_head].
        mask: [q_len, k_len] bool, True = hidden. Every row must leave at least one key visible.
    Returns:
        output [b, h, q_len, d_head] in the input dtype, and probabilities [b, h, q_len, k_len]
        (float32) when `output_attentions`, else None.
    """
    dtype = query.dtype
    b, h, q_len, d_head = query.shape
    k_len, n_pos = key.shape[2], pos_key.shape[1]
    scale = 1.0 / math.sqrt(d_head)
    query, key, value, pos_key = query.float(), key.float(), value.float(), pos_key.float()

    query_u = query + content_bias.float()[:, None, :]  # [b, h, q_len, d_head]
    query_v = query + position_bias.float()[:, None, :]  # [b, h, q_len, d_head]
    pos_scores = torch.einsum("bhqd,hpd->bhqp", query_v, pos_key)  # [b, h, q_len, n_pos]
    index = relative_position_index(q_len=q_len, k_len=k_len, n_pos=n_pos, device=query.device)
    pos_scores = pos_scores.gather(-1, index.expand(b, h, q_len, k_len))  # [b, h, q_len, k_len]
    bias = (pos_scores * scale).masked_fill(mask, float("-inf"))  # [b, h, q_len, k_len]

    if output_attentions:
        scores = torch.matmul(query_u, key.transpose(-1, -2)) * scale + bias  # [b, h, q_len, k_len]
        probs = torch.softmax(scores, dim=-1)
        output = torch.matmul(F.dropout(probs, p=dropout_p), value)  # [b, h, q_len, d_head]
        return output.to(dtype), probs
    output = F.scaled_dot_product_attention(query_u, key, value, attn_mask=bias, dropout_p=dropout_p, scale=scale)
    return output.to(dtype), None  # [b, h, q_len, d_head]


class TransformerXLAttention(nn.Module):
    """Multi-head relative attention sub-block with its residual and LayerNorm.

    Bias-free fused `qkv_net` ([W_q; W_k; W_v] stacked on the output axis), `r_net` (W_R) and `o_net`,
    as in the paper and in 4.x. With `untie_r` the layer owns u (`r_w_bias`) and v (`r_r_bias`);
    otherwise the model passes its shared pair in.
    """

    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__()
        self.n_head, self.d_head = config.n_head, config.d_head
        self.pre_lnorm = config.pre_lnorm
        self.dropatt = config.dropatt
        inner = config.n_head * config.d_head
        self.qkv_net = nn.Linear(config.d_model, 3 * inner, bias=False)
        self.r_net = nn.Linear(config.d_model, inner, bias=False)
        self.o_net = nn.Linear(inner, config.d_model, bias=False)
        self.drop = nn.Dropout(config.dropout)
        self.layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        if config.untie_r:
            self.r_w_bias = nn.Parameter(torch.empty(config.n_head, config.d_head))
            self.r_r_bias = nn.Parameter(torch.empty(config.n_head, config.d_head))
        else:
            self.r_w_bias = self.r_r_bias = None

    def forward(
        self,
        hidden: torch.Tensor,
        mem: torch.Tensor | None,
        pos_emb: torch.Tensor,
        mask: torch.Tensor,
        *,
        shared_biases: tuple[torch.Tensor, torch.Tensor] | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden [b, q_len, d_model], mem [b, m_len, d_model] or None, pos_emb [n_pos, d_model] (float32),
        mask [q_len, k_len] -> (hidden [b, q_len, d_model], probs [b, h, q_len, k_len] or None)."""
        b, q_len, _ = hidden.shape
        context = hidden if mem is None else torch.cat([mem, hidden], dim=1)  # [b, k_len, d_model]
        k_len = context.shape[1]
        if self.pre_lnorm:
            context = self.layer_norm(context)  # memory is normalised too, as in the reference
        query, key, value = self.qkv_net(context).chunk(3, dim=-1)  # 3 x [b, k_len, h * d_head]
        query = query[:, -q_len:].view(b, q_len, self.n_head, self.d_head).transpose(1, 2)  # [b, h, q_len, d_head]
        key = key.view(b, k_len, self.n_head, self.d_head).transpose(1, 2)  # [b, h, k_len, d_head]
        value = value.view(b, k_len, self.n_head, self.d_head).transpose(1, 2)  # [b, h, k_len, d_head]
        pos_key = self.r_net(pos_emb.to(self.r_net.weight.dtype))  # [n_pos, h * d_head]
        pos_key = pos_key.view(-1, self.n_head, self.d_head).transpose(0, 1)  # [h, n_pos, d_head]
        content_bias, position_bias = shared_biases if self.r_w_bias is None else (self.r_w_bias, self.r_r_bias)

        attn, probs = relative_attention(
            query,
            key,
            value,
            pos_key,
            content_bias,
            position_bias,
            mask,
            dropout_p=self.dropatt if self.training else 0.0,
            output_attentions=output_attentions,
        )
        attn = attn.transpose(1, 2).reshape(b, q_len, self.n_head * self.d_head)  # [b, q_len, h * d_head]
        attn = self.drop(self.o_net(attn))  # [b, q_len, d_model]
        if self.pre_lnorm:
            return hidden + attn, probs
        return self.layer_norm(hidden + attn), probs


class TransformerXLLayer(GradientCheckpointingLayer):
    """One decoder layer: relative attention over [memory; segment], then the feed-forward block.

    Under gradient checkpointing (`model.activation_checkpointing_enable()`, `--gradient_checkpointing true`)
    transformers' `GradientCheckpointingLayer` keeps only the layer's inputs and recomputes the rest in the
    backward pass, with the same dropout masks. The memory is an input like the segment, so nothing changes
    for it; the segment's hidden state stays positional, as reentrant checkpointing needs.
    """

    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__()
        self.dec_attn = TransformerXLAttention(config)
        self.pos_ff = TransformerXLFeedForward(config)

    def forward(self, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Arguments, shapes and outputs of `TransformerXLAttention.forward`; the feed-forward block follows."""
        hidden, probs = self.dec_attn(*args, **kwargs)
        return self.pos_ff(hidden), probs


# ------------------------------------------------------------------------------------------------------
# Output layer
# ------------------------------------------------------------------------------------------------------


class TransformerXLAdaptiveLogSoftmax(nn.Module):
    """The output layer (`crit` in 4.x): a full softmax, or the adaptive softmax of Grave et al. (2017).

    Adaptive: the head scores the `cutoffs[0]` most frequent tokens plus one logit per tail cluster;
    log p(token in tail i) = log p_head(cluster i) + log p_tail_i(token). A token's loss needs the head
    and its own tail only, so training never builds a `[tokens, vocab]` matrix (`nll`); `log_probs`
    builds the whole distribution for generation and scoring. Each cluster's logits come from
    `hidden @ out_projs.i` (when there are projections) through `out_layers.i` (with `div_val == 1`,
    the cluster's rows of the single `out_layers.0`). Parameter names are those of 4.x.

    Axis names: n = scored positions (flattened), size_i = tokens in cluster i, d_i its width.
    """

    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__()
        self.bounds = config.cluster_bounds
        self.n_clusters = len(config.cutoffs)  # tail clusters; 0 = full softmax
        self.shared_layer = config.div_val == 1
        if self.n_clusters:
            self.cluster_weight = nn.Parameter(torch.empty(self.n_clusters, config.d_embed))
            self.cluster_bias = nn.Parameter(torch.empty(self.n_clusters))
        if self.shared_layer:
            self.out_layers = nn.ModuleList([nn.Linear(config.d_embed, config.vocab_size)])
            widths = [config.d_embed] * (self.n_clusters + 1) if config.d_embed != config.d_model else []
        else:
            sizes = [high - low for low, high in zip(self.bounds, self.bounds[1:])]
            widths = config.cluster_embed_dims()
            self.out_layers = nn.ModuleList([nn.Linear(width, size) for width, size in zip(widths, sizes)])
        self.out_projs = nn.ParameterList([nn.Parameter(torch.empty(config.d_model, width)) for width in widths])

    def cluster_parameters(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight [size_i, d_i], bias [size_i]) of each cluster; the head's end with one row per tail.

        With `div_val == 1` the clusters are one `split` of the shared layer: its backward writes one
        gradient of the whole table, where a slice per cluster would zero-fill a whole-table gradient
        for every cluster (at 267,735 x d words, that was a third of the step's time).
        """
        if self.shared_layer:
            sizes = [high - low for low, high in zip(self.bounds, self.bounds[1:])]
            layer = self.out_layers[0]
            parameters = list(zip(layer.weight.split(sizes), layer.bias.split(sizes)))
        else:
            parameters = [(layer.weight, layer.bias) for layer in self.out_layers]
        if self.n_clusters:
            weight, bias = parameters[0]
            parameters[0] = (torch.cat([weight, self.cluster_weight]), torch.cat([bias, self.cluster_bias]))
        return parameters

    def cluster_logits(
        self, hidden: torch.Tensor, cluster: int, parameters: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """[n, d_model] -> [n, size_cluster] logits of one cluster (`parameters` from `cluster_parameters`)."""
        if len(self.out_projs):
            hidden = hidden @ self.out_projs[cluster]  # [n, d_i]
        return F.linear(hidden, *parameters[cluster])

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """[n, d_model] -> [n, vocab] float32 log-probabilities over the whole vocabulary."""
        parameters = self.cluster_parameters()
        head = torch.log_softmax(self.cluster_logits(hidden, 0, parameters).float(), dim=-1)  # [n, size_0 + tails]
        shortlist = self.bounds[1]
        parts = [head[:, :shortlist]]
        for cluster in range(1, self.n_clusters + 1):
            tail = torch.log_softmax(self.cluster_logits(hidden, cluster, parameters).float(), dim=-1)  # [n, size_i]
            parts.append(head[:, shortlist + cluster - 1, None] + tail)
        return torch.cat(parts, dim=-1) if self.n_clusters else head

    def nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """[n, d_model], [n] ids (no -100) -> [n] float32 negative log-likelihoods, in the order of `targets`.

        The head runs on every position; tail i only on the positions whose target lies in it. Each
        position's head term (its word, or its cluster's column) is read in one `gather`, whose backward
        writes one `[n, shortlist]` gradient (an index per cluster would write one each).
        """
        parameters = self.cluster_parameters()
        head = torch.log_softmax(self.cluster_logits(hidden, 0, parameters).float(), dim=-1)  # [n, size_0 + tails]
        if not self.n_clusters:
            return -head.gather(1, targets[:, None]).squeeze(1)
        shortlist = self.bounds[1]
        cutoffs = torch.tensor(self.bounds[1:-1], device=targets.device)
        cluster_of = torch.bucketize(targets, cutoffs, right=True)  # [n], 0 = head, i = tail cluster i
        column = torch.where(cluster_of == 0, targets, shortlist + cluster_of - 1)
        log_prob = head.gather(1, column[:, None]).squeeze(1)  # [n]
        for cluster in range(1, self.n_clusters + 1):
            index = (cluster_of == cluster).nonzero().squeeze(1)
            if not index.numel():
                continue
            tail = torch.log_softmax(self.cluster_logits(hidden[index], cluster, parameters).float(), dim=-1)
            in_tail = tail.gather(1, (targets[index] - self.bounds[cluster])[:, None]).squeeze(1)  # [n_i]
            log_prob = log_prob.index_add(0, index, in_tail)
        return -log_prob


# ------------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------------


@dataclass
class TransformerXLModelOutput(ModelOutput):
    """last_hidden_state [b, q_len, d_model]; mems: n_layer x [b, min(m_len + q_len, mem_len), d_model]
    (detached layer inputs, to pass to the next segment); hidden_states: n_layer + 1 x [b, q_len, d_model]
    (embeddings, then each layer's output); attentions: n_layer x [b, h, q_len, k_len] (float32)."""

    last_hidden_state: torch.Tensor | None = None
    mems: Mems | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class TransformerXLLMOutput(ModelOutput):
    """loss: mean token loss when labels or target_ids are given: the cross-entropy, except for the sampled
    NCE / ranking loss in training (`loss_type` "nce" / "ranking"; never read exp of that as a perplexity).
    logits [b, q_len, vocab]: RAW scores with a full softmax; with an adaptive softmax (`cutoffs`), float32
    log-probabilities over the whole vocabulary; None when a loss was asked for, except with
    `loss_type="full"`. mems, hidden_states, attentions as in `TransformerXLModelOutput`.
    log_partition_mean / _std / _outlier_fraction: in eval mode, for a full output table (every
    `loss_type` but "adaptive"), mean and std over scored tokens of log Z(h) = logsumexp_w s(w, h) and the
    fraction with |log Z| > 1 (how far NCE left the model from self-normalised); else None."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    mems: Mems | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    log_partition_mean: torch.Tensor | None = None
    log_partition_std: torch.Tensor | None = None
    log_partition_outlier_fraction: torch.Tensor | None = None


# ------------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------------


def _check_attention_mask(attention_mask: torch.Tensor | None) -> None:
    """Padding is not supported: a stream model has no pad positions, and memory would carry them."""
    if attention_mask is not None and not bool((attention_mask != 0).all()):
        raise ValueError(
            "TransformerXL: attention_mask must be all ones (or None); padding/masking of positions is not "
            "supported. Feed unpadded contiguous segments instead."
        )


class TransformerXLPreTrainedModel(PreTrainedModel):
    config_class = TransformerXLConfig
    base_model_prefix = "transformer"
    main_input_name = "input_ids"
    _no_split_modules = ["TransformerXLLayer"]
    supports_gradient_checkpointing = True  # per layer: `TransformerXLLayer` is a `GradientCheckpointingLayer`
    # With untie_r=False, 4.x state dicts repeat the shared u/v under every layer; we keep one pair.
    _keys_to_ignore_on_load_unexpected = [r"layers\.\d+\.dec_attn\.r_[wr]_bias"]
    # The loss is a plain mean over the tokens of the batch; we do not use `num_items_in_batch`.
    accepts_loss_kwargs = False

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        """Like the parent, but a registered model records BOTH Auto classes in `auto_map`, so a saved
        language model also loads with `AutoModel.from_pretrained(..., trust_remote_code=True)`
        (the parent only records the class that was saved)."""
        if self._auto_class is not None:
            module = self.__class__.__module__.rsplit(".", 1)[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.setdefault("AutoModel", f"{module}.TransformerXLModel")
            auto_map.setdefault("AutoModelForCausalLM", f"{module}.TransformerXLForCausalLM")
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, init_std) for weights, embeddings, cluster logits and the u/v biases; normal(0,
        proj_init_std) for the adaptive projections (as 4.x); zeros for biases; LayerNorm weight 1 (HF
        convention). `nn.init` calls are guarded by transformers so loaded tensors stay."""
        std = self.config.init_std
        if isinstance(module, nn.ParameterList):  # `emb_projs` / `out_projs`, the only parameter lists here
            for proj in module:
                nn.init.normal_(proj, mean=0.0, std=self.config.proj_init_std)
        elif isinstance(module, TransformerXLAdaptiveLogSoftmax) and module.n_clusters:
            nn.init.normal_(module.cluster_weight, mean=0.0, std=std)
            nn.init.zeros_(module.cluster_bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, TransformerXLPositionalEmbedding):
            if not getattr(module.inv_freq, "_is_hf_initialized", False):
                module.inv_freq.copy_(module.compute_inv_freq(module.d_model, module.inv_freq.device))
        if isinstance(module, (TransformerXLAttention, TransformerXLModel)) and module.r_w_bias is not None:
            nn.init.normal_(module.r_w_bias, mean=0.0, std=std)
            nn.init.normal_(module.r_r_bias, mean=0.0, std=std)
        noise_log_probs = getattr(module, "noise_log_probs", None)
        if noise_log_probs is not None and not getattr(noise_log_probs, "_is_hf_initialized", False):
            noise_log_probs.fill_(-math.log(self.config.vocab_size))  # uniform q until set_noise_distribution


class TransformerXLModel(TransformerXLPreTrainedModel):
    """The Transformer-XL decoder stack (no output layer). See the module docstring for `mems`."""

    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__(config)
        self.word_emb = TransformerXLAdaptiveEmbedding(config)
        self.pos_emb = TransformerXLPositionalEmbedding(config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList([TransformerXLLayer(config) for _ in range(config.n_layer)])
        if config.untie_r:
            self.r_w_bias = self.r_r_bias = None
        else:
            self.r_w_bias = nn.Parameter(torch.empty(config.n_head, config.d_head))
            self.r_r_bias = nn.Parameter(torch.empty(config.n_head, config.d_head))
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        """The embedding table when there is exactly one and no projection (so transformers' resizing
        and tying helpers work); otherwise the whole adaptive embedding. Either maps ids to what
        `inputs_embeds` means (unscaled)."""
        word_emb = self.word_emb
        return word_emb.emb_layers[0] if len(word_emb.emb_layers) == 1 and not len(word_emb.emb_projs) else word_emb

    def set_input_embeddings(self, new_embeddings: nn.Module) -> None:
        if isinstance(new_embeddings, TransformerXLAdaptiveEmbedding):
            self.word_emb = new_embeddings
        else:
            self.word_emb.emb_layers[0] = new_embeddings

    def _check_mems(self, mems: Mems, batch: int) -> None:
        if len(mems) != self.config.n_layer:
            raise ValueError(f"TransformerXL: expected mems for {self.config.n_layer} layers, got {len(mems)}")
        for layer, mem in enumerate(mems):
            if mem.dim() != 3 or mem.shape[0] != batch or mem.shape[2] != self.config.d_model:
                raise ValueError(
                    f"TransformerXL: mems[{layer}] has shape {tuple(mem.shape)}; expected batch-first "
                    f"[{batch}, m_len, {self.config.d_model}]"
                )
            if mem.shape[1] != mems[0].shape[1]:
                raise ValueError("TransformerXL: all mems must have the same length")

    def _update_mems(self, layer_inputs: list[torch.Tensor], mems: Mems | None) -> Mems:
        """New memory of layer l = last `mem_len` positions of [old memory; input of layer l], detached:
        the stop-gradient of the paper, so training cost stays O(q_len * k_len) per layer."""
        mem_len = self.config.mem_len
        new_mems = []
        with torch.no_grad():
            for layer, layer_input in enumerate(layer_inputs):
                full = layer_input if mems is None else torch.cat([mems[layer], layer_input], dim=1)
                new_mems.append(full[:, max(0, full.shape[1] - mem_len) :].detach())  # [b, <=mem_len, d_model]
        return tuple(new_mems)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        mems: Mems | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> TransformerXLModelOutput | tuple:
        """Runs one segment.

        Args:
            input_ids: [b, q_len] token ids of the segment (or `inputs_embeds` [b, q_len, d_model]: the
                projected but UNSCALED embeddings, `get_input_embeddings()(ids)`; the model multiplies by
                sqrt(d_model)).
            mems: memory from the previous segment's output (`.mems`), or None for no memory.
            attention_mask: accepted for API compatibility only; it must be all ones (ValueError
                otherwise), since the model has no notion of padding.
        """
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("TransformerXL: pass exactly one of input_ids and inputs_embeds")
        _check_attention_mask(attention_mask)
        embedded = self.word_emb(input_ids) if inputs_embeds is None else inputs_embeds
        hidden = embedded * self.word_emb.emb_scale  # [b, q_len, d_model]
        b, q_len, _ = hidden.shape
        if mems is not None and len(mems) == 0:
            mems = None
        if mems is not None:
            self._check_mems(mems, b)
        m_len = 0 if mems is None else mems[0].shape[1]
        k_len = m_len + q_len

        n_pos = k_len if self.config.clamp_len <= 0 else min(k_len, self.config.clamp_len + 1)
        pos_emb = self.drop(self.pos_emb(n_pos, clamp_len=self.config.clamp_len, device=hidden.device))
        window = self.config.mem_len if self.config.same_length else None
        mask = causal_memory_mask(q_len=q_len, k_len=k_len, window=window, device=hidden.device)
        shared_biases = None if self.r_w_bias is None else (self.r_w_bias, self.r_r_bias)

        hidden = self.drop(hidden)
        layer_inputs, all_hidden, all_attentions = [], (hidden,), ()
        for layer_index, layer in enumerate(self.layers):
            layer_inputs.append(hidden)
            mem = None if mems is None else mems[layer_index]
            hidden, probs = layer(
                hidden, mem, pos_emb, mask, shared_biases=shared_biases, output_attentions=output_attentions
            )
            if output_attentions:
                all_attentions += (probs,)
            if layer_index + 1 < len(self.layers):
                all_hidden += (hidden,)
        hidden = self.drop(hidden)  # no final LayerNorm, as in the paper's code
        all_hidden += (hidden,)
        new_mems = self._update_mems(layer_inputs, mems)

        output = TransformerXLModelOutput(
            last_hidden_state=hidden,
            mems=new_mems,
            hidden_states=all_hidden if output_hidden_states else None,
            attentions=all_attentions if output_attentions else None,
        )
        return output if return_dict else output.to_tuple()


def tied_parameter_names(config: TransformerXLConfig) -> dict[str, str]:
    """`{output parameter: input parameter it shares}` by the 4.x rules.

    `tie_word_embeddings`: each output table `crit.out_layers.i.weight` is embedding table i (biases stay
    separate). `tie_projs[i]`: output projection i is input projection i, or with `div_val == 1` the one
    input projection. wt103 (`div_val 4`, `tie_projs [false, true, true, true]`) keeps `out_projs.0` apart.
    """
    tied = {}
    if config.tie_word_embeddings:
        for i in range(1 if config.div_val == 1 else len(config.cutoffs) + 1):
            tied[f"crit.out_layers.{i}.weight"] = f"transformer.word_emb.emb_layers.{i}.weight"
    for i, tie in enumerate(config.tie_projs):
        if tie and config.div_val > 1:
            tied[f"crit.out_projs.{i}"] = f"transformer.word_emb.emb_projs.{i}"
        elif tie and config.d_embed != config.d_model:
            tied[f"crit.out_projs.{i}"] = "transformer.word_emb.emb_projs.0"
    return tied


class TransformerXLForCausalLM(TransformerXLPreTrainedModel, GenerationMixin):
    """Transformer-XL with its output layer `crit` (full or adaptive softmax) and a language-modelling loss.

    Two ways to get a loss:
    - `labels` [b, q_len]: transformers' causal-LM convention, shifted INSIDE the segment (position t
      predicts labels[t + 1]); the last position of each segment is not scored. -100 is ignored.
    - `target_ids` [b, q_len]: stream-LM convention, already aligned (position t predicts
      target_ids[t], typically the stream's next token, crossing the segment boundary), so that
      every token of a stream is scored exactly once over consecutive segments. -100 is ignored.

    The loss follows `config.loss_type`; only `"full"` builds the `[tokens, vocab]` logits with a loss:
    - `"adaptive"`: cluster by cluster (`crit.nll`), in training and evaluation;
    - `"chunked"`: the exact cross-entropy by the fused linear cross-entropy (`linear_cross_entropy.py`):
      `loss_chunk_size` tokens at a time, each block's gradients computed in the forward pass, so one
      `[chunk, vocab]` block is alive and the weight gradient is accumulated in one buffer;
    - `"nce"` / `"ranking"`: in training, the sampled loss of `sampled_losses` on the target row and
      `num_noise_samples` noise rows of the output table, drawn from `noise_log_probs` once per step and
      shared by every token (Zoph et al. 2016; Jozefowicz et al. 2016); scores `s = h W^T + b` (log Z
      fixed to 0). Accidental hits are kept for nce (consistent) and removed for ranking.
    In eval mode every non-adaptive `loss_type` computes the exact cross-entropy (chunked unless "full")
    and reports log Z statistics, so `exp(loss)` is a true perplexity. Without a loss, `logits` are the
    raw scores (full table) or the full log-probabilities (adaptive), which `generate()`, pipelines and
    argmax/softmax use exactly as logits.

    With `"nce"` / `"ranking"` the model holds `noise_log_probs` (log q, float32 `[vocab]`, saved with the
    weights; uniform until `set_noise_distribution`) and a private noise generator (`noise_generator`,
    seeded with `config.noise_seed` on first use; Trainer does not checkpoint it).
    """

    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__(config)
        self.transformer = TransformerXLModel(config)
        self.crit = TransformerXLAdaptiveLogSoftmax(config)
        if config.loss_type in SAMPLED_LOSS_TYPES:
            uniform = torch.full((config.vocab_size,), -math.log(config.vocab_size))
            self.register_buffer("noise_log_probs", uniform, persistent=True)
            self._noise_sampler = AliasSampler()
        self.post_init()

    # --- noise (loss_type "nce" / "ranking") ---------------------------------------------------------

    @torch.no_grad()
    def set_noise_distribution(self, noise_log_probs: torch.Tensor, *, reset_output_bias: bool = True) -> None:
        """Sets `log q` `[vocab]` (normalised here, stored in float32) and, by default, the output bias to
        `log q`, so training starts self-normalised (delta = -log k), as Pytorch-NCE and our NCE model do.
        Build it with `sampled_losses.noise_log_probs_from_counts(count_tokens(...))`."""
        if self.config.loss_type not in SAMPLED_LOSS_TYPES:
            raise ValueError(f"TransformerXL: loss_type={self.config.loss_type!r} draws no noise")
        log_q = normalised_noise_log_probs(noise_log_probs, vocab_size=self.config.vocab_size)
        self.noise_log_probs.copy_(log_q.to(self.noise_log_probs.device, torch.float32))
        if reset_output_bias:
            bias = self.crit.out_layers[0].bias
            bias.copy_(self.noise_log_probs.to(bias.dtype))

    @property
    def noise_generator(self) -> torch.Generator:
        """The private generator all noise is drawn from (`get_state()` / `set_state()`)."""
        return self._noise_sampler.generator(self.noise_log_probs.device, seed=self.config.noise_seed)

    def sample_noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Draws iid ids from q (with replacement) by the alias method: `shape` long tensor."""
        return self._noise_sampler.sample(self.noise_log_probs, shape, seed=self.config.noise_seed)

    @property
    def _tied_weights_keys(self) -> dict[str, str]:
        return tied_parameter_names(self.config)

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict[str, str]:
        """Our exact names. The parent ties nothing when `tie_word_embeddings` is False, but 4.x ties the
        projections (`tie_projs`) regardless, and `tied_parameter_names` already applies both rules."""
        if all_submodels:
            return super().get_expanded_tied_weights_keys(all_submodels=True)
        return dict(self._tied_weights_keys)

    def get_input_embeddings(self) -> nn.Module:
        return self.transformer.get_input_embeddings()

    def set_input_embeddings(self, new_embeddings: nn.Module) -> None:
        self.transformer.set_input_embeddings(new_embeddings)

    def get_output_embeddings(self) -> nn.Linear | None:
        """The output layer when it is one full softmax (what transformers' tying helpers expect), else None."""
        return None if self.crit.n_clusters or len(self.crit.out_projs) else self.crit.out_layers[0]

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.crit.out_layers[0] = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        mems: Mems | None = None,
        labels: torch.LongTensor | None = None,
        target_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> TransformerXLLMOutput | tuple:
        """Runs one segment; see the class docstring for `labels` vs `target_ids` and
        `TransformerXLModel.forward` for the other arguments."""
        if labels is not None and target_ids is not None:
            raise ValueError("TransformerXL: pass labels (shifted inside) or target_ids (aligned), not both")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        has_targets = labels is not None or target_ids is not None
        shared_gradient = self._shared_table_gradient() if has_targets and inputs_embeds is None else None
        if shared_gradient is not None:
            inputs_embeds, input_ids = self.transformer.word_emb(input_ids, shared_gradient=shared_gradient), None
        base = self.transformer(
            input_ids=input_ids,
            mems=mems,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden = base.last_hidden_state  # [b, q_len, d_model]
        if labels is not None:
            scored, targets = hidden[:, :-1], labels[:, 1:]
        else:
            scored, targets = hidden, target_ids
        b, q_len, d_model = hidden.shape
        loss_type = self.config.loss_type
        logits = loss = None
        diagnostics = {}

        if targets is None or loss_type == "full":
            logits = self._full_logits(hidden.reshape(-1, d_model)).view(b, q_len, -1)  # [b, q_len, vocab]
            if targets is not None:
                loss = self._token_loss(logits[:, : scored.shape[1]], targets)
                if not self.training:
                    with torch.no_grad():
                        kept = targets.to(logits.device) != -100  # [b, scored len]
                        log_z = torch.logsumexp(logits[:, : scored.shape[1]][kept].float(), dim=-1)  # [n]
                    diagnostics = log_partition_statistics(log_z)
        else:
            targets = targets.to(hidden.device).reshape(-1)
            kept = targets != -100
            scored, targets = scored.reshape(-1, d_model)[kept], targets[kept]  # [n, d_model], [n]
            if loss_type == "adaptive":
                loss = self.crit.nll(scored, targets).sum() / kept.sum().clamp(min=1)  # no token: 0, no gradient
            elif self.training and loss_type in SAMPLED_LOSS_TYPES:
                loss = self._sampled_token_losses(scored, targets).sum() / kept.sum().clamp(min=1)
            else:
                loss, log_z = self._exact_loss(scored, targets, shared_gradient=shared_gradient)
                if not self.training:
                    diagnostics = log_partition_statistics(log_z)

        output = TransformerXLLMOutput(
            loss=loss,
            logits=logits,
            mems=base.mems,
            hidden_states=base.hidden_states,
            attentions=base.attentions,
            **diagnostics,
        )
        return output if return_dict else output.to_tuple()

    def _shared_table_gradient(self) -> SharedTableGradient | None:
        """One `[vocab, d]` gradient for a tied table: a `SharedTableGradient` when this pass's loss is the fused
        exact one (`chunked`; every non-adaptive loss in evaluation) and its output weight is the one trainable
        embedding table, else None. Without it the table holds two vocabulary-sized gradients at once, the
        loss's and the input lookup's (261 MB each at 267,735 words x 256)."""
        fused = self.config.loss_type == "chunked" or (
            not self.training and self.config.loss_type in SAMPLED_LOSS_TYPES
        )
        tables = self.transformer.word_emb.emb_layers
        weight = tables[0].weight
        tied = len(tables) == 1 and self.crit.out_layers[0].weight is weight
        return SharedTableGradient() if fused and tied and torch.is_grad_enabled() and weight.requires_grad else None

    def _exact_loss(
        self, hidden: torch.Tensor, targets: torch.Tensor, *, shared_gradient: SharedTableGradient | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden [n, d_model], targets [n] (no -100) -> mean exact cross-entropy of the full output table
        (float32; 0 without tokens) and log Z(h) [n], by the fused linear cross-entropy: `loss_chunk_size`
        tokens at a time, each block's gradients computed in the forward pass, so one [chunk, vocab] block
        is alive at a time and nothing of it is kept for backward."""
        layer = self.crit.out_layers[0]
        if len(self.crit.out_projs):
            hidden = hidden @ self.crit.out_projs[0]  # [n, d_embed]
        vocab, width = layer.weight.shape
        chunk = self.config.loss_chunk_size or default_chunk_size(vocab_size=vocab, hidden_size=width)
        return linear_cross_entropy(
            hidden, layer.weight, layer.bias, targets, chunk_size=chunk, shared_table=shared_gradient
        )

    def _sampled_token_losses(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """hidden [n, d_model], targets [n] (no -100) -> NCE or ranking loss [n] (float32) with one draw of
        k noise ids shared by all n tokens: one [k, d] gather and one [n, d] x [d, k] product, never
        [n, vocab]. Rows are gathered from the (tied) output table, so gradients reach the embedding."""
        k = self.config.num_noise_samples
        log_q = self.noise_log_probs.float()
        noise = self.sample_noise((k,))  # [k]
        layer = self.crit.out_layers[0]
        if len(self.crit.out_projs):
            hidden = hidden @ self.crit.out_projs[0]  # [n, d_embed]
        target_rows, target_bias = table_rows(layer.weight, targets), table_rows(layer.bias, targets)  # [n, d], [n]
        target_scores = (hidden * target_rows).sum(-1).float() + target_bias.float()  # [n]
        noise_scores = torch.addmm(table_rows(layer.bias, noise), hidden, table_rows(layer.weight, noise).T).float()
        hits = noise == targets[:, None] if self.config.loss_type == "ranking" else None  # [n, k]
        return sampled_loss(self.config.loss_type, target_scores, noise_scores, log_q[targets], log_q[noise], k, hits)

    def _full_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[n, d_model] -> [n, vocab]: raw scores of a full softmax, log-probabilities of an adaptive one."""
        if self.crit.n_clusters:
            return self.crit.log_probs(hidden)
        return self.crit.cluster_logits(hidden, 0, self.crit.cluster_parameters())

    @staticmethod
    def _token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (float32) over positions whose target is not -100: the summed token losses
        over their count, so a batch with no such position gives 0 and no gradient (not 0 / 0 = NaN)."""
        targets = targets.to(logits.device).reshape(-1)
        logits = logits.float().reshape(-1, logits.shape[-1])
        total = F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum")
        return total / (targets != -100).sum().clamp(min=1)

    # --- generation: the state is `mems`, carried in model_kwargs instead of a transformers Cache -------

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        mems: Mems | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool = True,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """First step: the whole prompt, no memory. Later steps: only the newest token plus `mems`.

        Tokens equal those of full recomputation while mem_len >= prompt + generated length and
        same_length is off; beyond that the model sees its usual `mem_len` window, as in training.
        With mem_len == 0 or use_cache=False every step recomputes the whole sequence.
        """
        _check_attention_mask(attention_mask)
        if inputs_embeds is not None:
            raise ValueError("TransformerXL.generate: inputs_embeds is not supported; pass input_ids")
        carry = use_cache and self.config.mem_len > 0 and mems is not None
        model_inputs: dict[str, Any] = {"input_ids": input_ids[:, -1:] if carry else input_ids}
        model_inputs["mems"] = mems if carry else None
        for name in ("output_attentions", "output_hidden_states"):
            if name in kwargs:
                model_inputs[name] = kwargs[name]
        return model_inputs

    def _update_model_kwargs_for_generation(
        self,
        outputs: ModelOutput,
        model_kwargs: dict[str, Any],
        is_encoder_decoder: bool = False,
        num_new_tokens: int = 1,
    ) -> dict[str, Any]:
        if num_new_tokens != 1:
            raise ValueError("TransformerXL.generate: only one new token per step is supported")
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        # The parent files `mems` under `past_key_values`; keep it under our own name instead.
        model_kwargs.pop("past_key_values", None)
        model_kwargs["mems"] = outputs.mems
        return model_kwargs

    def _reorder_cache(self, mems: Mems, beam_idx: torch.Tensor) -> Mems:
        """Beam search: memory rows follow their beams (batch is the first axis)."""
        return tuple(mem.index_select(0, beam_idx.to(mem.device)) for mem in mems)


__all__ = [
    "TransformerXLPreTrainedModel",
    "TransformerXLAdaptiveEmbedding",
    "TransformerXLAdaptiveLogSoftmax",
    "TransformerXLModel",
    "TransformerXLForCausalLM",
    "TransformerXLModelOutput",
    "TransformerXLLMOutput",
    "relative_position_index",
    "causal_memory_mask",
    "relative_attention",
    "tied_parameter_names",
]
