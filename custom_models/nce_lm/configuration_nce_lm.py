"""Configuration of a GPT-2 language model trained with noise-contrastive estimation (NCE).

`NCELMConfig` is a `GPT2Config` (every GPT-2 field keeps its meaning, so a GPT-2 checkpoint
initialises the backbone) plus the fields of the sampled output layer. References:

- Gutmann & Hyvärinen 2012 (JMLR 13): NCE as logistic regression between data and noise.
- Mnih & Teh 2012 (ICML): NCE for language models, log Z fixed to 0 (self-normalisation).
- Zoph et al. 2016 (NAACL) and Jozefowicz et al. 2016 (arXiv 1602.02410): noise shared by all
  tokens of a step, so the noise scores are one dense matrix product.
- Ma & Collins 2018 (EMNLP): the ranking variant (softmax over the target and k noise samples
  with `s - log(k q)` scores), consistent under weaker assumptions than binary NCE.
"""

from transformers import GPT2Config

LOSS_TYPES = ("nce", "ranking", "full")
NOISE_SHARINGS = ("batch", "token")
ACCIDENTAL_HITS = ("auto", "keep", "remove")


class NCELMConfig(GPT2Config):
    r"""GPT-2 configuration with an NCE / sampled output layer.

    Args (in addition to `GPT2Config`'s):
        loss_type: training objective when labels are given in `model.train()` mode.
            `"nce"`: binary classification of the target against `num_noise_samples` noise ids
            (Gutmann & Hyvärinen; Mnih & Teh). `"ranking"`: softmax over the target and the noise
            ids with the `log(k q)` correction (sampled softmax; Ma & Collins 2018). `"full"`:
            ordinary softmax cross-entropy over the vocabulary (the baseline, same model).
            Evaluation (`model.eval()`) is always the exact softmax cross-entropy.
        num_noise_samples: k, noise ids drawn per step (`"batch"`) or per token (`"token"`).
        noise_power: exponent applied to the token counts when the noise distribution is built
            from counts (`noise_log_probs_from_counts`): 1.0 is the unigram, 0.75 the word2vec
            choice. Must lie in (0, 1].
        noise_sharing: `"batch"` draws one vector of k ids per forward pass, shared by every
            token (one `[k, d]` gather and one matrix product: the fast path). `"token"` draws
            k ids for every token (alias method); much slower, same expected gradient.
        accidental_hits: what to do when a noise id equals the position's target. `"keep"`
            is consistent for binary NCE (noise is independent of the target); `"remove"`
            drops those (token, noise) pairs (zero loss term for `"nce"`, `-inf` logit for
            `"ranking"`). `"auto"` means `"keep"` for `"nce"` and `"remove"` for `"ranking"`.
        log_partition: log Z subtracted from every score; 0.0 is the self-normalised model.
        learn_log_partition: if True, `log_partition` is the initial value of a learned scalar
            (it only changes the `"nce"` loss; the softmax losses are invariant to it).
        noise_seed: seed of the model's private noise generator. Under DDP give every rank a
            different seed (e.g. `seed + rank`), otherwise all ranks draw the same noise.
        loss_chunk_size: tokens per block of the exact loss (`"full"` training and evaluation, by the
            fused linear cross-entropy): bounds the `[chunk, vocab]` temporaries. None (default): chosen
            from the vocabulary and the width (`linear_cross_entropy.default_chunk_size`).
    """

    model_type = "nce-gpt2"

    loss_type: str = "nce"
    num_noise_samples: int = 256
    noise_power: float = 1.0
    noise_sharing: str = "batch"
    accidental_hits: str = "auto"
    log_partition: float = 0.0
    learn_log_partition: bool = False
    noise_seed: int = 0
    loss_chunk_size: int | None = None

    def __post_init__(self, **kwargs):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if (
            isinstance(self.num_noise_samples, bool)
            or not isinstance(self.num_noise_samples, int)
            or self.num_noise_samples <= 0
        ):
            raise ValueError(f"num_noise_samples must be a positive int, got {self.num_noise_samples!r}")
        if not 0.0 < float(self.noise_power) <= 1.0:
            raise ValueError(f"noise_power must lie in (0, 1], got {self.noise_power!r}")
        if self.noise_sharing not in NOISE_SHARINGS:
            raise ValueError(f"noise_sharing must be one of {NOISE_SHARINGS}, got {self.noise_sharing!r}")
        if self.accidental_hits not in ACCIDENTAL_HITS:
            raise ValueError(f"accidental_hits must be one of {ACCIDENTAL_HITS}, got {self.accidental_hits!r}")
        if not -1e4 < float(self.log_partition) < 1e4:
            raise ValueError(f"log_partition must be a finite float, got {self.log_partition!r}")
        if self.loss_chunk_size is not None and (
            isinstance(self.loss_chunk_size, bool)
            or not isinstance(self.loss_chunk_size, int)
            or self.loss_chunk_size <= 0
        ):
            raise ValueError(f"loss_chunk_size must be a positive int or None, got {self.loss_chunk_size!r}")
        super().__post_init__(**kwargs)

    @property
    def remove_accidental_hits(self) -> bool:
        """Resolves `accidental_hits="auto"`: remove for the ranking loss, keep for binary NCE."""
        if self.accidental_hits == "auto":
            return self.loss_type == "ranking"
        return self.accidental_hits == "remove"


__all__ = ["NCELMConfig"]
