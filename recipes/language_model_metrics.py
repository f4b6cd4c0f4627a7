"""The sums behind a language model's evaluation metrics, gathered over every process: the loss (hence
perplexity and bits per token) is summed negative log-likelihood over scored tokens, never a mean of batch
means, so it does not depend on the batch layout or the process count.

Log-partition statistics (`LogPartitionSums`) are reported for a model trained by a self-normalising loss
(`loss_type` `nce` or `ranking`: trained without the partition function, its scores are meant to be used
unnormalised, and log Z(h) says how far they are from it). A model trained by the softmax (`full`, `chunked`,
`adaptive`) is normalised by construction: its log Z(h) is arbitrary and is not reported.
"""

import torch
from transformers import PretrainedConfig, Trainer
from transformers.utils import ModelOutput

from custom_models.nce_lm.sampled_losses import SAMPLED_LOSS_TYPES
from data.metrics import perplexity_metrics


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
