"""Attention over each packed row alone, for padding-free batches on any device (`sdpa_packed_rows`).

A padding-free batch (`data.qa_features.PaddingFreeCollator`) is one sequence of all its rows, `position_ids`
restarting at each. transformers' `sdpa` attention gets it as one dense block-causal mask over the whole sequence
(32 NQ-open rows: ~570 x 570), so every query is scored against every key of the batch and most of the scores are
masked away: 32 rows of ~18 tokens need ~1/32 of that work. flash-attention's variable-length kernel skips the masked
blocks, but only on CUDA with flash-attn installed. `packed_rows_sdpa`, registered with transformers' public
`AttentionInterface` (with `sdpa`'s mask, `AttentionMaskInterface`) as `sdpa_packed_rows`, runs transformers' own
sdpa on each row alone with a causal mask, where the mask it is given is exactly the rows' block-causal mask; on any
other mask (padded batches, generation, sliding windows, a single row) it runs `sdpa` unchanged. So the outputs and
gradients are sdpa's (up to float rounding): only the masked-out products are skipped.
"""

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

PACKED_ROWS_ATTENTION = "sdpa_packed_rows"


def packed_row_lengths(
    position_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, query: torch.Tensor, key: torch.Tensor
) -> list[int] | None:
    """The lengths of the rows packed in a batch of one sequence (a row starts where `position_ids` do not go on by
    one), when `attention_mask` is exactly their block-causal mask (boolean, [1, 1, q_len, k_len]) and queries and
    keys are the same tokens; None otherwise (one row, another mask, several sequences, a cache)."""
    length = query.shape[2]
    if position_ids is None or attention_mask is None or query.shape[0] != 1 or key.shape[2] != length:
        return None
    if tuple(position_ids.shape) != (1, length) or attention_mask.dtype != torch.bool:
        return None
    if tuple(attention_mask.shape) != (1, 1, length, length):
        return None
    starts = torch.ones(length, dtype=torch.bool, device=position_ids.device)
    starts[1:] = position_ids[0, 1:] != position_ids[0, :-1] + 1
    rows = starts.cumsum(0)  # [t]: the row of each token, from 1
    block_causal = (rows[:, None] == rows[None, :]).tril()  # [t, t]
    if rows[-1] == 1 or not torch.equal(attention_mask[0, 0], block_causal):
        return None
    return torch.bincount(rows)[1:].tolist()


def packed_rows_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' `sdpa_attention_forward` (query [b, h, q_len, d], key and value [b, h_kv, k_len, d]; returns
    ([b, q_len, h, d], None)), run on each packed row alone and causally when `attention_mask` is the rows'
    block-causal mask (`packed_row_lengths`), else on the whole batch with `attention_mask`."""
    lengths = packed_row_lengths(kwargs.get("position_ids"), attention_mask, query, key)
    if lengths is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    kwargs["is_causal"] = True
    rows = zip(*(states.split(lengths, dim=2) for states in (query, key, value)), strict=True)
    outputs = [sdpa_attention_forward(module, q, k, v, None, **kwargs)[0] for q, k, v in rows]  # [1, len, h, d]
    return torch.cat(outputs, dim=1), None


AttentionInterface.register(PACKED_ROWS_ATTENTION, packed_rows_sdpa)
AttentionMaskInterface.register(PACKED_ROWS_ATTENTION, sdpa_mask)


def use_packed_rows_attention(model: PreTrainedModel) -> bool:
    """Switches `model`'s attention (the base model's, under PEFT) from `sdpa` to `sdpa_packed_rows`; whether it now
    runs `sdpa_packed_rows`. Any other attention (eager, flash-attention, a model whose attention does not go through
    transformers' attention interface) is left as it is."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(model.config, "_attn_implementation", None) == "sdpa":
        model.set_attn_implementation(PACKED_ROWS_ATTENTION)
    return model.config._attn_implementation == PACKED_ROWS_ATTENTION
