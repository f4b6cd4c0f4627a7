"""Configuration of Transformer-XL (Dai et al. 2019, arXiv 1901.02860).

Field names and meanings follow the `TransfoXLConfig` of transformers 4.x, so that a 4.x checkpoint
folder (`config.json` with `model_type: "transfo-xl"`, or an older file naming only
`TransfoXLLMHeadModel`) loads with `TransformerXLForCausalLM.from_pretrained`, the adaptive wt103 model
included. Options that 4.x itself never ran (`attn_type != 0`, `sample_softmax > 0`) are rejected when
the config is built, not silently ignored at run time.
"""

from typing import Any

from transformers import PreTrainedConfig

# The `model_type` of transformers 4.x checkpoints. transformers 5.x no longer knows it; we accept such
# config files and rewrite them to our own `model_type` (see `TransformerXLConfig.get_config_dict`).
LEGACY_MODEL_TYPE = "transfo-xl"
_LEGACY_ARCHITECTURES = {"TransfoXLLMHeadModel": "TransformerXLForCausalLM", "TransfoXLModel": "TransformerXLModel"}
# 4.x-only keys with no meaning here: `trainer_compatible` only reordered 4.x tuple outputs; `tie_weight` and
# `tgt_len` were recorded but never read by the 4.x model (`tie_word_embeddings` decides the tying).
_LEGACY_KEYS_DROPPED = ("trainer_compatible", "tie_weight", "tgt_len")
# 4.x defaults that differ from ours: a 4.x file omits a field that had its class default (the wt103 one).
_LEGACY_DEFAULTS = {"cutoffs": [20000, 40000, 200000], "div_val": 4}
LOSS_TYPES = ("full", "chunked", "adaptive", "nce", "ranking")


class TransformerXLConfig(PreTrainedConfig):
    """Hyper-parameters of a Transformer-XL language model.

    Args:
        vocab_size: number of tokens; the embedding and the output layer have this many rows.
        d_model: width of the residual stream (and of the sinusoidal relative position encoding).
        d_embed: embedding width (of the first cluster with adaptive input). When it differs from
            `d_model`, or with `div_val > 1`, projections map embeddings to `d_model` and back.
        n_head: number of attention heads.
        d_head: width of one head; `n_head * d_head` need not equal `d_model` (the projections map).
        d_inner: hidden width of the position-wise feed-forward block.
        n_layer: number of layers.
        mem_len: how many previous positions each layer keeps as memory (0 disables memory). With
            `same_length`, also the attention window: every query sees exactly its last `mem_len` keys.
        clamp_len: relative distances larger than this use the encoding of `clamp_len` (0 = no clamping).
        same_length: every query attends to the same number of keys (`mem_len`, itself included).
        pre_lnorm: LayerNorm before each sub-block (pre-norm) instead of after the residual (post-norm).
        untie_r: one pair of global biases `u` (`r_w_bias`) and `v` (`r_r_bias`) per layer; if False,
            one pair shared by all layers.
        dropout: dropout on embeddings, position encodings, sub-block outputs and the final output.
        dropatt: dropout on attention probabilities.
        layer_norm_epsilon: LayerNorm epsilon.
        init_std: standard deviation of the normal initialisation of weights and biases `u`, `v`.
        tie_word_embeddings: share each output layer's weight with the matching input embedding table
            (output biases stay separate).
        cutoffs: adaptive input and softmax (Baevski & Auli 2019; Grave et al. 2017): the vocabulary is
            cut at these ids into a frequent head `[0, cutoffs[0])` and tail clusters; the softmax scores
            the head plus one logit per tail, and a tail's own softmax only for the tokens in it. Ids must
            be ordered by frequency. `[]` (or None) = one full softmax.
        adaptive: True exactly when `cutoffs` is non-empty (4.x recorded it; the clusters decide).
        div_val: cluster i embeds in `d_embed // div_val**i` dimensions; 1 = one shared width (one table
            for the whole vocabulary, projected per cluster when `d_embed != d_model`).
        tie_projs: per cluster, share the output projection with the input projection (4.x meaning:
            with `div_val == 1` every tied cluster shares the one input projection). None derives it
            from `proj_share_all_but_first`: `[False] + [proj_share_all_but_first] * len(cutoffs)`.
        attn_type: 0 = relative attention of the paper; other 4.x variants are not implemented.
        sample_softmax: <= 0 (sampled softmax is not implemented).
        proj_init_std: standard deviation of the normal initialisation of the projections.
        init, init_range: kept so 4.x config files round-trip; `init` must be "normal".
        loss_type: training loss (`model.train()` with labels or target_ids). `"full"`: softmax
            cross-entropy over the whole `[tokens, vocab]` logits. `"chunked"`: the same exact loss by the fused
            linear cross-entropy, `loss_chunk_size` tokens at a time, never all logits at once.
            `"adaptive"`: the adaptive softmax of `cutoffs`. `"nce"` / `"ranking"`: binary / ranking NCE
            against `num_noise_samples` ids drawn from `noise_log_probs`, shared by the batch (as
            `NCELMConfig`; accidental hits kept for nce, removed for ranking). `"adaptive"` needs
            `cutoffs`, the others need none (one output table). None: `"adaptive"` with cutoffs, else
            `"full"` (what a 4.x file means). Evaluation (`model.eval()`) is always the exact loss.
        num_noise_samples: k, noise ids drawn per training step for `"nce"` / `"ranking"`.
        noise_power: `q ∝ count ** noise_power`; recorded here for the recipe that counts the noise.
        noise_seed: seed of the private noise generator (give DDP ranks different seeds).
        loss_chunk_size: tokens per block of the exact loss (`"chunked"` training, and every exact loss
            computed without returning logits): bounds the `[chunk, vocab]` temporaries. None (default):
            chosen from the vocabulary and the width (`linear_cross_entropy.default_chunk_size`).
    """

    model_type = "transformer-xl"
    keys_to_ignore_at_inference = ["mems"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
    }

    vocab_size: int = 267735
    d_model: int = 1024
    d_embed: int = 1024
    n_head: int = 16
    d_head: int = 64
    d_inner: int = 4096
    n_layer: int = 18
    mem_len: int = 1600
    clamp_len: int = 1000
    same_length: bool = True
    pre_lnorm: bool = False
    untie_r: bool = True
    dropout: float = 0.1
    dropatt: float = 0.0
    layer_norm_epsilon: float = 1e-5
    init_std: float = 0.02
    tie_word_embeddings: bool = True
    adaptive: bool = False
    cutoffs: list[int] | None = None
    div_val: int = 1
    proj_share_all_but_first: bool = True
    tie_projs: list[bool] | None = None
    attn_type: int = 0
    sample_softmax: int = -1
    init: str = "normal"
    init_range: float = 0.01
    proj_init_std: float = 0.01
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = 0
    pad_token_id: int | None = None
    loss_type: str | None = None
    num_noise_samples: int = 1024
    noise_power: float = 1.0
    noise_seed: int = 0
    loss_chunk_size: int | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        self.cutoffs = list(self.cutoffs or [])
        if self.loss_type is None:
            self.loss_type = "adaptive" if self.cutoffs else "full"
        if self.tie_projs is None:
            self.tie_projs = [False] + [self.proj_share_all_but_first] * len(self.cutoffs)
        self._validate()
        super().__post_init__(**kwargs)

    @property
    def cluster_bounds(self) -> list[int]:
        """`[0, *cutoffs, vocab_size]`: cluster i holds the ids `[bounds[i], bounds[i + 1])`."""
        return [0, *self.cutoffs, self.vocab_size]

    def cluster_embed_dims(self) -> list[int]:
        """Embedding width of each cluster: `d_embed // div_val**i`."""
        return [self.d_embed // self.div_val**i for i in range(len(self.cutoffs) + 1)]

    def _validate(self) -> None:
        """Raises ValueError naming the field and value of the first unsupported setting."""

        def fail(field: str, value: Any, why: str) -> None:
            raise ValueError(f"TransformerXLConfig: {field}={value!r} is not supported: {why}")

        for name in ("vocab_size", "d_model", "d_embed", "n_head", "d_head", "d_inner", "n_layer"):
            if getattr(self, name) <= 0:
                fail(name, getattr(self, name), "must be a positive integer")
        if self.mem_len < 0:
            fail("mem_len", self.mem_len, "must be >= 0 (0 disables memory)")
        if self.clamp_len < 0:
            fail("clamp_len", self.clamp_len, "must be >= 0 (0 disables clamping)")
        if self.same_length and self.mem_len == 0:
            fail("same_length", self.same_length, "with mem_len=0 the attention window would be empty")
        if self.d_model % 2:
            fail("d_model", self.d_model, "the sinusoidal position encoding needs an even width")
        bounds = self.cluster_bounds
        if any(low >= high for low, high in zip(bounds, bounds[1:])):
            fail("cutoffs", self.cutoffs, f"must increase strictly within (0, vocab_size={self.vocab_size})")
        if self.adaptive != bool(self.cutoffs):
            fail("adaptive", self.adaptive, f"must be {bool(self.cutoffs)} with cutoffs={self.cutoffs}")
        if self.div_val < 1:
            fail("div_val", self.div_val, "must be >= 1")
        if min(self.cluster_embed_dims()) < 1:
            fail("div_val", self.div_val, f"leaves a cluster with no embedding width (d_embed={self.d_embed})")
        if len(self.tie_projs) != len(self.cutoffs) + 1:
            fail("tie_projs", self.tie_projs, f"needs one entry per cluster ({len(self.cutoffs) + 1})")
        if self.attn_type != 0:
            fail("attn_type", self.attn_type, "only the relative attention of the paper (0) is implemented")
        if self.sample_softmax > 0:
            fail("sample_softmax", self.sample_softmax, "sampled softmax is not implemented")
        if self.init != "normal":
            fail("init", self.init, "only normal initialisation (init_std) is implemented")
        for name in ("dropout", "dropatt"):
            if not 0.0 <= getattr(self, name) < 1.0:
                fail(name, getattr(self, name), "must be in [0, 1)")
        if self.loss_type not in LOSS_TYPES:
            fail("loss_type", self.loss_type, f"must be one of {LOSS_TYPES}")
        if (self.loss_type == "adaptive") != bool(self.cutoffs):
            need = "needs cutoffs (the clusters)" if self.loss_type == "adaptive" else "needs cutoffs=[]"
            fail("loss_type", self.loss_type, f"{need}; got cutoffs={self.cutoffs}")

        def positive_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value > 0

        if not positive_int(self.num_noise_samples):
            fail("num_noise_samples", self.num_noise_samples, "must be a positive integer")
        if self.loss_chunk_size is not None and not positive_int(self.loss_chunk_size):
            fail("loss_chunk_size", self.loss_chunk_size, "must be a positive integer or None (automatic)")
        if not 0.0 < float(self.noise_power) <= 1.0:
            fail("noise_power", self.noise_power, "must lie in (0, 1]")

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path: Any, **kwargs: Any) -> tuple[dict, dict]:
        """Reads a config file; a transformers 4.x `transfo-xl` file is rewritten to this `model_type`.

        The fields are compatible, so the rewrite renames the type and 4.x class names, fills the fields a
        4.x file may omit with 4.x's defaults, and drops keys that meant nothing outside 4.x. Any
        unsupported 4.x option still fails in `_validate`.
        """
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        architectures = config_dict.get("architectures") or []
        legacy = config_dict.get("model_type") == LEGACY_MODEL_TYPE or (
            "model_type" not in config_dict and any(name in _LEGACY_ARCHITECTURES for name in architectures)
        )
        if legacy:
            config_dict = {**_LEGACY_DEFAULTS, **config_dict, "model_type": cls.model_type}
            if "n_token" in config_dict:  # the name of vocab_size in pytorch-transformers 1.x files
                config_dict["vocab_size"] = config_dict.pop("n_token")
            config_dict["adaptive"] = bool(config_dict["cutoffs"])  # 4.x never read it; the cutoffs decided
            if config_dict.pop("ext_len", 0):
                raise ValueError("TransformerXLConfig: ext_len > 0 (extended context) is not supported")
            if config_dict.get("architectures"):
                config_dict["architectures"] = [
                    _LEGACY_ARCHITECTURES.get(name, name) for name in config_dict["architectures"]
                ]
            for key in _LEGACY_KEYS_DROPPED:
                config_dict.pop(key, None)
        return config_dict, kwargs


__all__ = ["TransformerXLConfig"]
