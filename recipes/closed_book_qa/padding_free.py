"""Padding-free training batches for closed-book QA (`padding_free`), where the model keeps packed rows apart.

A QA example is a prompt and a short answer (NQ-open: ~24 tokens on average, with a long tail), so a batch padded
to its longest row spends much of its compute on padding. `data.qa_features.PaddingFreeCollator` concatenates the
rows instead, with `position_ids` restarting at each row; transformers 5.x turns restarted positions into a
block-causal mask for eager and sdpa attention (and flash-attention's varlen path), so the loss and gradients are
the padded batch's. A model whose attention does not (its own attention code, or one that ignores
`position_ids`) would let rows attend to each other silently, so it is checked on the model itself, once, before
training (`keeps_packed_rows_apart`): `padding_free` null uses padding-free batches where the check passes (else
padded ones, said in one line), `true` refuses a model that fails it, `false` pads. With padding-free batches, a
model running `sdpa` attention runs it on each packed row alone instead (`packed_attention.py`: same outputs, without
the dense mask's masked-out work); any other attention is kept and said in one line.
"""

import logging

import torch
from transformers import PreTrainedModel

from data.qa_features import PaddingFreeCollator, QATrainingCollator
from recipes.closed_book_qa.packed_attention import use_packed_rows_attention
from recipes.kit.errors import ConfigError

logger = logging.getLogger(__name__)

#: The lengths of the two rows the check packs (their ids are the vocabulary's first ones).
PROBE_LENGTHS = (5, 3)


def keeps_packed_rows_apart(model: PreTrainedModel) -> bool:
    """Whether `model` scores the second of two packed rows (restarted `position_ids`, no mask) as it scores that
    row alone: its logits agree to 1e-3 of their scale. Run in eval mode without gradients; the mode is restored."""
    device = next(model.parameters()).device
    first, second = (torch.arange(length, device=device) % model.config.vocab_size for length in PROBE_LENGTHS)
    positions = torch.cat([torch.arange(len(first)), torch.arange(len(second))]).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed_ids, packed_positions = torch.cat([first, second])[None], positions[None]
            packed = model(input_ids=packed_ids, position_ids=packed_positions, use_cache=False).logits
            alone = model(input_ids=second[None], position_ids=positions[len(first) :][None], use_cache=False).logits
    finally:
        model.train(was_training)
    packed, alone = packed[0, len(first) :].float(), alone[0].float()
    return bool((packed - alone).abs().max() <= 1e-3 * alone.abs().max().clamp_min(1.0))


def training_collator(
    model: PreTrainedModel, pad_token_id: int, *, padding_free: bool | None, do_train: bool
) -> PaddingFreeCollator | QATrainingCollator:
    """The training batches' collator: padding-free when `padding_free` allows it and the model keeps packed rows
    apart (checked only when training), else padded with `pad_token_id`. With padding-free batches, `model`'s `sdpa`
    attention is switched to `sdpa_packed_rows` (`use_packed_rows_attention`: the same outputs, per row).

    Raises:
        ConfigError: `padding_free` true for a model that lets packed rows attend to each other.
    """
    if padding_free is False or not do_train:
        return QATrainingCollator(pad_token_id)
    attention = getattr(model.config, "_attn_implementation", None)
    if keeps_packed_rows_apart(model):
        per_row = use_packed_rows_attention(model)
        logger.info(
            "padding_free: training rows concatenated, position_ids restarting at each row; attention: %s",
            "sdpa per row (sdpa_packed_rows)" if per_row else f"{attention}, not switched to sdpa per row",
        )
        return PaddingFreeCollator()
    if padding_free:
        raise ConfigError(
            f"padding_free true: {type(model).__name__} ({attention} attention) lets packed rows attend to each "
            "other; set padding_free false (or null: padded batches where packing is not safe)"
        )
    logger.info(
        "padding_free: %s (%s attention) does not keep packed rows apart: padded batches",
        type(model).__name__,
        attention,
    )
    return QATrainingCollator(pad_token_id)
