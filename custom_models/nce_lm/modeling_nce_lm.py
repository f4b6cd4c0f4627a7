"""A GPT-2 language model trained with noise-contrastive estimation (NCE).

Axis names used in shape comments: `b` batch, `t` sequence, `n` scored tokens (labels != -100
after the shift), `k` noise samples, `d` hidden size, `V` vocabulary.

Scores. `s(w, h) = h . W_w + b_w - c` with `W` the (tied) token embedding, `b` an output bias
(a new parameter: GPT-2's `lm_head` has none) initialised to `log q`, and `c = log Z`
(`config.log_partition`, fixed or learned). `logits` returned by the model are these `s`.

Losses (per scored token, noise `q`, k noise ids `n_j`, `delta(w) = s(w, h) - log k - log q(w)`):

- `"nce"` (Gutmann & Hyvärinen 2012; Mnih & Teh 2012):
  `-logsigmoid(delta(target)) - sum_j logsigmoid(-delta(n_j))` (noise terms summed, not averaged).
- `"ranking"` (Ma & Collins 2018; Jozefowicz et al. 2016 call it importance sampling):
  `-log softmax([delta(target), delta(n_1), ..., delta(n_k)])[0]`.
- `"full"`: softmax cross-entropy over the vocabulary.

In `model.train()` mode with labels and a sampled loss the full `[n, V]` logits are never built and
`logits` is None. In `model.eval()` mode (or with `loss_type="full"`) the loss is the exact
cross-entropy, so `exp(loss)` is a true perplexity; the sampled losses are not perplexities.
"""

import inspect
import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin, GPT2Model, GPT2PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

from .configuration_nce_lm import NCELMConfig
from .linear_cross_entropy import default_chunk_size, linear_cross_entropy
from .sampled_losses import (
    AliasSampler,
    count_tokens,
    log_partition_statistics,
    nce_loss,
    noise_log_probs_from_counts,
    normalised_noise_log_probs,
    ranking_loss,
    sampled_loss,
    table_rows,
)

# transformers 5.24 renamed the key/value cache (`forward` argument and output field) from
# `past_key_values` to `cache`. This file ships with pushed models and runs under whatever version
# the user has, so it follows the installed one.
CACHE_NAME = "cache" if "cache" in inspect.signature(GPT2Model.forward).parameters else "past_key_values"


def _cache_argument(cache, kwargs: dict) -> dict:
    """The key/value cache as a keyword argument for the installed GPT-2 backbone: `{CACHE_NAME: cache}`,
    taking it from `kwargs["past_key_values"]` (popped) when passed under the pre-5.24 name."""
    if cache is None:
        cache = kwargs.pop("past_key_values", None)
    return {CACHE_NAME: cache}


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


@dataclass
class NCELMOutput(CausalLMOutputWithCrossAttentions):
    """Output of `NCELMForCausalLM`: transformers' causal-LM output (its cache field is named as the
    installed version names it) plus the self-normalisation diagnostics.

    loss: sampled loss (train mode, `loss_type` "nce"/"ranking") or exact cross-entropy (eval mode,
        or `loss_type="full"`), averaged over tokens whose label is not -100 (or summed and
        divided by `num_items_in_batch` when the Trainer passes it).
    logits: `[b, t, V]` scores `s = h W^T + b - log Z` without labels; None whenever a loss is computed
        (the exact loss is fused with the output layer, see `linear_cross_entropy.py`).
    log_partition_mean / log_partition_std: mean and std over scored tokens of
        `log Z(h) = logsumexp_w s(w, h)` (0 for a perfectly self-normalised model).
    log_partition_outlier_fraction: fraction of scored tokens with `|log Z(h)| > 1`.
    self_normalized_nll: mean of `-s(target, h)`, the NLL if `Z(h) = 1` were taken for granted;
        `loss == self_normalized_nll + log_partition_mean` (per token identity, averaged).
    The four diagnostics are detached and only set when the exact loss is computed.
    """

    log_partition_mean: torch.Tensor | None = None
    log_partition_std: torch.Tensor | None = None
    log_partition_outlier_fraction: torch.Tensor | None = None
    self_normalized_nll: torch.Tensor | None = None


class NCELMPreTrainedModel(GPT2PreTrainedModel):
    config_class = NCELMConfig

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Like the parent, but a registered model records BOTH Auto classes in `auto_map`, so a saved
        language model also loads with `AutoModel.from_pretrained(..., trust_remote_code=True)` (the
        parent records only the class that was saved)."""
        if self._auto_class is not None:
            module = self.__class__.__module__.rsplit(".", 1)[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.setdefault("AutoModel", f"{module}.NCELMModel")
            auto_map.setdefault("AutoModelForCausalLM", f"{module}.NCELMForCausalLM")
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, NCELMForCausalLM):
            # Children (lm_head: bias zeroed) are initialised before their parent. Tensors already
            # loaded from a checkpoint carry `_is_hf_initialized` and are left alone.
            def missing(tensor):
                return not getattr(tensor, "_is_hf_initialized", False)

            if missing(module.noise_log_probs):
                module.noise_log_probs.fill_(-math.log(self.config.vocab_size))  # uniform q
            if missing(module.log_partition):
                module.log_partition.fill_(self.config.log_partition)
            if missing(module.lm_head.bias):
                module.lm_head.bias.copy_(module.noise_log_probs)  # starts self-normalised


class NCELMModel(GPT2Model):
    """The bare GPT-2 backbone under the NCE config (what `AutoModel` returns)."""

    config_class = NCELMConfig


class NCELMForCausalLM(NCELMPreTrainedModel, GenerationMixin):
    """GPT-2 with a tied output layer plus bias, trained with NCE, ranking NCE or full softmax.

    Parameter names match `GPT2LMHeadModel` (`transformer.*`, `lm_head.weight` tied to
    `transformer.wte.weight`), so `NCELMForCausalLM.from_pretrained(<gpt2 checkpoint>)` loads the
    backbone and embeddings; `lm_head.bias`, `log_partition` and the `noise_log_probs` buffer are
    new (uniform q until `set_noise_distribution` is called, bias = log q).

    The noise generator is private (`noise_generator`, seeded with `config.noise_seed` on first
    use, on the device of `noise_log_probs`). Trainer does not checkpoint it; save
    `model.noise_generator.get_state()` yourself for a bit-identical resume.
    """

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: NCELMConfig):
        super().__init__(config)
        self.transformer = NCELMModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=True)
        # Shape [1], not a scalar: FSDP (`fully_shard`) cannot shard a 0-dimensional parameter.
        self.log_partition = nn.Parameter(
            torch.full((1,), float(config.log_partition)), requires_grad=config.learn_log_partition
        )
        self.register_buffer(
            "noise_log_probs", torch.full((config.vocab_size,), -math.log(config.vocab_size)), persistent=True
        )
        self._noise_sampler = AliasSampler()
        self.post_init()

    # --- noise ------------------------------------------------------------------------------

    @torch.no_grad()
    def set_noise_distribution(self, noise_log_probs: torch.Tensor, *, reset_output_bias: bool = True) -> None:
        """Sets `log q` `[V]` (normalised here, stored in fp32) and, by default, re-initialises the
        output bias to `log q` so that training starts self-normalised (delta = -log k).
        Build `noise_log_probs` with `noise_log_probs_from_counts(count_tokens(...))`."""
        log_q = normalised_noise_log_probs(noise_log_probs, vocab_size=self.config.vocab_size)
        self.noise_log_probs.copy_(log_q.to(self.noise_log_probs.device, torch.float32))
        if reset_output_bias:
            self.lm_head.bias.copy_(self.noise_log_probs.to(self.lm_head.bias.dtype))

    @property
    def noise_generator(self) -> torch.Generator:
        """The private generator all noise is drawn from (`get_state()` / `set_state()`)."""
        return self._noise_sampler.generator(self.noise_log_probs.device, seed=self.config.noise_seed)

    def sample_noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Draws iid ids from q (with replacement) by the alias method: `shape` long tensor."""
        return self._noise_sampler.sample(self.noise_log_probs, shape, seed=self.config.noise_seed)

    # --- losses -----------------------------------------------------------------------------

    def _scores(self, hidden: torch.Tensor, ids: torch.Tensor, *, per_row: bool) -> torch.Tensor:
        """`s(ids, hidden)` in fp32 from gathered rows of the tied weight (gradients reach `wte`).

        hidden `[n, d]`; `per_row=True`: ids `[n]` (one id per row, the targets) -> `[n]`, or ids
        `[n, k]` (per-token noise) -> `[n, k]`; `per_row=False`: ids `[k]` shared by every row
        -> `[n, k]` through one `[n, d] x [d, k]` product."""
        rows = table_rows(self.lm_head.weight, ids)  # like ids, plus d
        offset = table_rows(self.lm_head.bias, ids).float() - self.log_partition.float()  # like ids
        if not per_row:  # [n, d] x [d, k] -> [n, k], bias added inside the GEMM
            return torch.addmm(offset.to(hidden.dtype), hidden, rows.T).float()
        if ids.dim() == 1:
            scores = (hidden * rows).sum(-1)  # [n]
        else:
            scores = torch.bmm(rows, hidden.unsqueeze(-1)).squeeze(-1)  # [n, k, d] x [n, d, 1]
        return scores.float() + offset

    def sampled_token_losses(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-token sampled loss `[n]` (fp32) for hidden states `[n, d]` and targets `[n]`, with
        noise drawn from this model's sampler. Never builds `[n, V]` scores."""
        config = self.config
        k = config.num_noise_samples
        log_q = self.noise_log_probs.float()
        shared = config.noise_sharing == "batch"
        noise_ids = self.sample_noise((k,) if shared else (targets.shape[0], k))  # [k] or [n, k]
        target_scores = self._scores(hidden, targets, per_row=True)  # [n]
        noise_scores = self._scores(hidden, noise_ids, per_row=not shared)  # [n, k]
        hits = noise_ids == targets.unsqueeze(-1) if config.remove_accidental_hits else None  # [n, k]
        return sampled_loss(config.loss_type, target_scores, noise_scores, log_q[targets], log_q[noise_ids], k, hits)

    def exact_loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed exact cross-entropy (float32) of hidden states `[n, d]` and targets `[n]`, and
        `log Z(h)` `[n]` (detached), by the fused linear cross-entropy: `loss_chunk_size` tokens at a time,
        never the `[n, V]` logits. The loss does not depend on `log_partition` (it cancels); log Z does."""
        weight, bias = self.lm_head.weight, self.lm_head.bias
        chunk = self.config.loss_chunk_size or default_chunk_size(
            vocab_size=weight.shape[0], hidden_size=weight.shape[1]
        )
        loss, log_z = linear_cross_entropy(hidden, weight, bias, targets, chunk_size=chunk, reduction="sum")
        return loss, log_z - self.log_partition.detach().float()

    # --- forward ----------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        cache=None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> NCELMOutput:
        """Labels follow transformers: `labels = input_ids` is fine (shifted here), -100 ignored.

        No labels: full logits, no loss; `logits_to_keep` as in transformers' causal LMs: an int keeps the last
        positions (0: all), a 1-D tensor those positions, a boolean `[b, t]` mask its true positions (`[n, V]`).
        train mode + labels + loss_type "nce"/"ranking": sampled loss, `logits=None`.
        Otherwise (eval mode or loss_type "full"): the exact cross-entropy by the fused linear
        cross-entropy and the self-normalisation diagnostics, `logits=None` (never `[b, t, V]`).
        `num_items_in_batch` (from Trainer under gradient accumulation): the summed token losses are
        divided by it instead of by this batch's token count. `cache` (also accepted as
        `past_key_values`, the name before transformers 5.24): GPT-2's key/value cache.
        """
        outputs = self.transformer(
            input_ids,
            **_cache_argument(cache, kwargs),
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden = outputs.last_hidden_state  # [b, t, d]

        if labels is None:
            return self._output(outputs, logits=self._logits(_positions_to_keep(hidden, logits_to_keep)))

        shifted = labels[:, 1:]  # [b, t-1]: position i predicts token i+1
        positions = (shifted != -100).nonzero(as_tuple=True)  # ignored positions: no terms at all
        targets = shifted[positions]  # [n]
        denominator = num_items_in_batch if num_items_in_batch is not None else max(targets.numel(), 1)

        if self.training and self.config.loss_type != "full":  # sampled: never builds [n, V]
            token_losses = self.sampled_token_losses(hidden[positions], targets)  # hidden [n, d]
            return self._output(outputs, loss=token_losses.sum() / denominator)

        total, log_z = self.exact_loss(hidden[positions], targets)  # never builds [n, V]
        with torch.no_grad():
            mean_nll = total / max(targets.numel(), 1)
            diagnostics = {**log_partition_statistics(log_z), "self_normalized_nll": mean_nll - log_z.mean()}
        return self._output(outputs, loss=total / denominator, **diagnostics)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores `s = h W^T + b - log Z`: hidden `[b, t, d]` -> `[b, t, V]`."""
        return self.lm_head(hidden) - self.log_partition.to(hidden.dtype)

    @staticmethod
    def _output(outputs, **fields) -> NCELMOutput:
        """`NCELMOutput` with the backbone's cache, hidden states and attentions, plus `fields`."""
        return NCELMOutput(
            **{CACHE_NAME: getattr(outputs, CACHE_NAME)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            **fields,
        )


__all__ = [
    "NCELMForCausalLM",
    "NCELMModel",
    "NCELMOutput",
    "NCELMPreTrainedModel",
    "count_tokens",
    "nce_loss",
    "noise_log_probs_from_counts",
    "ranking_loss",
]


def _positions_to_keep(hidden: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
    """hidden `[b, t, d]` cut to the positions whose logits are wanted (the convention of transformers 5.x
    causal LMs, written here because the model's code also runs under older 5.x releases from the Hub)."""
    if isinstance(logits_to_keep, int):
        return hidden[:, -logits_to_keep:] if logits_to_keep else hidden
    if logits_to_keep.dtype == torch.bool:  # [b, t] -> [n, d]
        return hidden[logits_to_keep]
    if logits_to_keep.dim() == 2:  # [b, k] positions per row
        return torch.take_along_dim(hidden, logits_to_keep[..., None], dim=1)
    return hidden[:, logits_to_keep]
