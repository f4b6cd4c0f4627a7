"""What the two language-model recipes (NCE LM, Transformer-XL) share: the noise distribution of a sampled loss,
and the sums behind their evaluation metrics.

Noise (`set_training_noise`): the unigram distribution of the training tokens, raised to `noise_power`, saved
with the weights; a new output bias starts at log q, so training starts self-normalised.

Metrics: the sums are gathered over every process: the loss (hence
perplexity and bits per token) is summed negative log-likelihood over scored tokens, never a mean of batch
means, so it does not depend on the batch layout or the process count.

Log-partition statistics (`LogPartitionSums`) are reported for a model trained by a self-normalising loss
(`loss_type` `nce` or `ranking`: trained without the partition function, its scores are meant to be used
unnormalised, and log Z(h) says how far they are from it). A model trained by the softmax (`full`, `chunked`,
`adaptive`) is normalised by construction: its log Z(h) is arbitrary and is not reported.
"""

import torch
from transformers import PretrainedConfig, PreTrainedModel, Trainer
from transformers.utils import ModelOutput

from custom_models.nce_lm.sampled_losses import SAMPLED_LOSS_TYPES, count_tokens, noise_log_probs_from_counts
from data.metrics import perplexity_metrics

#: Tokens counted at a time: int64 chunks of the training stream, so counting holds no large copy.
COUNT_CHUNK_TOKENS = 1 << 22


def set_training_noise(
    model: PreTrainedModel,
    train_stream: torch.Tensor,
    *,
    noise_power: float,
    smoothing: float = 1.0,
    reset_output_bias: bool,
) -> None:
    """Sets the noise distribution of `model` (a model trained by a sampled loss: its `set_noise_distribution`)
    to the unigram counts of `train_stream` (token ids), plus `smoothing`, raised to `noise_power`; with
    `reset_output_bias` (a new output bias) the bias starts at log q."""
    counts = count_tokens(train_stream.split(COUNT_CHUNK_TOKENS), vocab_size=model.config.vocab_size)
    log_q = noise_log_probs_from_counts(counts, noise_power=noise_power, smoothing=smoothing)
    model.set_noise_distribution(log_q, reset_output_bias=reset_output_bias)


class TokenLossSums:
    """Token-weighted sums of per-batch mean losses, turned into the loss, perplexity and bits per token of
    a whole evaluation set over all processes (a batch's weight is its number of scored tokens)."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # tokens, summed negative log-likelihood

    def add(self, mean_loss: torch.Tensor, num_tokens: torch.Tensor) -> None:
        """Adds one batch (skip batches with no scored token: their mean is NaN)."""
        num_tokens = num_tokens.double()
        self.sums += torch.stack([num_tokens, num_tokens * mean_loss.double()])

    def metrics(self, trainer: Trainer) -> dict[str, float]:
        """`loss`, `perplexity`, `bits_per_token`, `tokens` over every process (every process must call it)."""
        tokens, nll = trainer.accelerator.reduce(self.sums, reduction="sum").tolist()
        loss = nll / tokens
        return {"loss": loss, **perplexity_metrics(loss), "tokens": int(tokens)}


def is_self_normalising(config: PretrainedConfig) -> bool:
    """Whether the model of `config` was trained by a self-normalising loss (`nce`, `ranking`): only then do
    its log-partition statistics mean something (see the module docstring)."""
    return getattr(config, "loss_type", None) in SAMPLED_LOSS_TYPES


class LogPartitionSums:
    """Token-weighted sums of a model's per-batch self-normalisation statistics (`log_partition_mean`,
    `log_partition_std`, `log_partition_outlier_fraction` of its output), turned into the metrics of a
    whole evaluation set over all processes; for a model of `config` trained by a self-normalising loss
    only (`is_self_normalising`), nothing otherwise."""

    def __init__(self, device: torch.device, config: PretrainedConfig) -> None:
        self.reported = is_self_normalising(config)
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)  # tokens, log Z, log Z^2, outliers

    def add(self, output: ModelOutput, num_tokens: torch.Tensor) -> None:
        """Adds one batch of `num_tokens` scored tokens (skip batches with none: their means are NaN)."""
        if not self.reported:
            return
        mean, std = output.log_partition_mean.double(), output.log_partition_std.double()
        outliers = output.log_partition_outlier_fraction.double()
        self.sums += num_tokens.double() * torch.stack([torch.ones_like(mean), mean, std**2 + mean**2, outliers])

    def metrics(self, trainer: Trainer) -> dict[str, float]:
        """`log_partition_{mean,std,outlier_fraction}` over every process (none if no batch had them, or if
        the model's loss is not self-normalising). Every process must call it: the sums are reduced across
        processes."""
        if not self.reported:  # the same on every process: the model's config
            return {}
        tokens, log_z, log_z_sq, outliers = trainer.accelerator.reduce(self.sums, reduction="sum").tolist()
        if tokens == 0:
            return {}
        mean = log_z / tokens
        return {
            "log_partition_mean": mean,
            "log_partition_std": max(log_z_sq / tokens - mean**2, 0.0) ** 0.5,
            "log_partition_outlier_fraction": outliers / tokens,
        }
