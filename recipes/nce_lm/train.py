"""Train a GPT-2 language model by noise-contrastive estimation (NCE); evaluate its exact perplexity.

    accelerate launch recipes/nce_lm/train.py recipes/nce_lm/configs/tiny.yaml

NCE (and its ranking variant) scores the data token against `num_noise_samples` ids drawn from the training
unigram distribution instead of the whole vocabulary, so a step never builds full-vocabulary logits: the
point of the recipe at large vocabularies. The logged training loss is therefore not a cross-entropy;
evaluation computes the exact softmax (a true perplexity) and, for `nce` / `ranking`, log Z(h), which shows how
self-normalised the model is. The noise distribution is counted on the training tokens and saved with the
weights; each process draws its own noise (seed + rank) and checkpoints its generator (`nce` / `ranking`), so a
resumed run draws what the uninterrupted run would have. Flags, modes and files: README.md, "NCE language model".
"""

import logging
from dataclasses import dataclass, field

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig, TrainingArguments, default_data_collator

from custom_models.nce_lm import NCELMConfig
from custom_models.nce_lm.sampled_losses import SAMPLED_LOSS_TYPES
from data.lm_corpus import TextSplit
from data.streams import SlidingWindows, TokenBlocks
from recipes.kit.arguments import ModelArguments, RecipeTrainingArguments, TextCorpusArguments
from recipes.kit.callbacks import noise_generator_state
from recipes.kit.command_line import run_from_command_line
from recipes.kit.data_steps import describe_data, load_corpus, load_tokenizer_and_streams, stream_source
from recipes.kit.errors import ConfigError
from recipes.kit.generation import GenerationArguments, predict_continuations
from recipes.kit.language_models import set_training_noise
from recipes.kit.loading_options import hub_kwargs
from recipes.kit.model_loading import load_model
from recipes.kit.run_steps import evaluate_splits, save_card_and_push, start_run, train
from recipes.nce_lm.nce_trainer import NCETrainer

logger = logging.getLogger(__name__)


@dataclass
class NCELMModelArguments(ModelArguments):
    """The GPT-2 model, its tokenizer and its training loss (NCE, ranking or full) with the noise it draws."""

    config_class = NCELMConfig  # reads GPT-2 checkpoints too

    tokenizer_kind: str = field(default="word", metadata={"help": "Tokenizer trained on the fly: 'word' or 'bpe'."})
    loss_type: str = field(default="nce", metadata={"help": "Training loss: 'nce', 'ranking' or 'full'."})
    num_noise_samples: int = field(default=256, metadata={"help": "k, noise ids per step (shared) or per token."})
    noise_power: float = field(default=1.0, metadata={"help": "q ∝ count ** noise_power, in (0, 1]."})
    noise_smoothing: float = field(default=1.0, metadata={"help": "Added to every count (> 0: log q finite)."})
    noise_sharing: str = field(default="batch", metadata={"help": "'batch' (one draw per step) or 'token'."})
    accidental_hits: str = field(default="auto", metadata={"help": "'auto', 'keep' or 'remove'."})
    log_partition: float = field(default=0.0, metadata={"help": "log Z subtracted from every score."})
    learn_log_partition: bool = field(default=False, metadata={"help": "Learn log Z (a scalar) with NCE."})
    loss_chunk_size: int | None = field(
        default=None, metadata={"help": "Tokens per block of the exact loss (null: from vocabulary and width)."}
    )

    def __post_init__(self) -> None:
        if self.tokenizer_kind not in ("word", "bpe"):
            raise ConfigError(f"tokenizer_kind must be 'word' or 'bpe', got {self.tokenizer_kind!r}")
        if not self.noise_smoothing > 0:
            raise ConfigError(f"noise_smoothing must be > 0, got {self.noise_smoothing}")
        super().__post_init__()  # the NCE fields and config_overrides, checked by NCELMConfig

    def recipe_config_fields(self) -> dict:
        names = (
            "loss_type",
            "num_noise_samples",
            "noise_power",
            "noise_sharing",
            "accidental_hits",
            "log_partition",
            "learn_log_partition",
            "loss_chunk_size",
        )
        return {name: getattr(self, name) for name in names}


@dataclass
class NCELMDataArguments(TextCorpusArguments):
    """The corpus, cut into training blocks and sliding evaluation windows."""

    block_size: int = field(default=128, metadata={"help": "Tokens per training block / evaluation window."})
    eval_stride: int | None = field(
        default=None,
        metadata={"help": "New tokens scored per evaluation window, < block_size; the rest is context. None: half."},
    )

    def __post_init__(self) -> None:
        if self.block_size < 2:
            raise ConfigError(f"block_size must be >= 2, got {self.block_size}")
        if self.eval_stride is not None and not 1 <= self.eval_stride < self.block_size:
            raise ConfigError(f"eval_stride must be >= 1 and < block_size ({self.block_size}), got {self.eval_stride}")
        super().__post_init__()


CONFIG_CLASSES = (NCELMModelArguments, NCELMDataArguments, GenerationArguments, RecipeTrainingArguments)


def main(
    model_args: NCELMModelArguments,
    data_args: NCELMDataArguments,
    generation_args: GenerationArguments,
    training_args: TrainingArguments,
) -> dict[str, float]:
    # Run
    start_run(model_args, training_args)
    # Data
    corpus = load_corpus(data_args, training_args)
    # Tokenizer
    tokenizer, streams = load_tokenizer_and_streams(
        model_args, data_args, corpus, training_args, kind=model_args.tokenizer_kind
    )
    # Model
    special = {"bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id}
    model = load_model(
        AutoModelForCausalLM,
        model_args,
        training_args,
        new_model_fields={"vocab_size": len(tokenizer), **special},
        lengths={"block_size": data_args.block_size},
    )
    model.config.noise_seed = training_args.seed + training_args.process_index  # each process draws its own noise
    if training_args.do_train:
        set_training_noise(
            model,
            streams["train"],
            noise_power=model_args.noise_power,
            smoothing=model_args.noise_smoothing,
            reset_output_bias=output_bias_is_new(model_args),
        )
    # Trainer
    eval_datasets = evaluation_windows(streams, corpus, data_args, training_args)
    trainer = NCETrainer(
        model=model,
        args=training_args,
        train_dataset=training_blocks(streams, corpus, data_args, training_args),
        eval_dataset=eval_datasets.get("eval"),
        data_collator=default_data_collator,  # equal-length blocks: stack, no padding
        processing_class=tokenizer,
        callbacks=[noise_generator_state(model)] if model.config.loss_type in SAMPLED_LOSS_TYPES else None,
    )
    # Train
    if training_args.do_train:
        train(trainer)
    # Evaluate
    metrics = evaluate_splits(trainer, eval_datasets) if training_args.do_eval else {}
    # Predict
    if training_args.do_predict:
        predict_continuations(trainer, corpus["test"], generation_args.generation_config(tokenizer))
    # Save, card, push
    if training_args.do_train:
        save_card_and_push(
            trainer,
            title=f"GPT-2 language model trained with {model.config.loss_type} (NCE family) loss",
            data=describe_data(data_args),
            metrics=metrics,
            notes=(
                "Load with `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`. Perplexity is the "
                "exact softmax over the vocabulary; `log_partition_*` measure how far log Z(h) is from 0."
            ),
            arguments=(model_args, data_args, generation_args, training_args),
        )
    return metrics


def training_blocks(
    streams: dict[str, torch.Tensor],
    corpus: dict[str, TextSplit],
    data_args: NCELMDataArguments,
    training_args: TrainingArguments,
) -> TokenBlocks | None:
    """The training stream cut into blocks of `block_size` tokens (`data.streams.TokenBlocks`); None without
    `do_train`."""
    if not training_args.do_train:
        return None
    return TokenBlocks(streams["train"], block_size=data_args.block_size, source=stream_source(corpus, "train"))


def evaluation_windows(
    streams: dict[str, torch.Tensor],
    corpus: dict[str, TextSplit],
    data_args: NCELMDataArguments,
    training_args: TrainingArguments,
) -> dict[str, SlidingWindows]:
    """With `do_eval`, the validation and test streams (metric prefixes `eval`, `test`) as sliding windows of
    `block_size` tokens that score `eval_stride` new tokens each (default half a block), the rest context."""
    if not training_args.do_eval:
        return {}
    stride = data_args.eval_stride or data_args.block_size // 2
    return {
        prefix: SlidingWindows(
            streams[split], block_size=data_args.block_size, stride=stride, source=stream_source(corpus, split)
        )
        for prefix, split in (("eval", "validation"), ("test", "test"))
        if split in streams
    }


def output_bias_is_new(model_args: NCELMModelArguments) -> bool:
    """Whether the output bias of the model being trained starts here: a new model's, or a GPT-2 checkpoint's (GPT-2
    has no output bias); such a bias starts at log q (`set_training_noise`). A checkpoint of this model keeps its
    trained bias."""
    if not model_args.model_name_or_path:
        return True
    saved = PretrainedConfig.get_config_dict(model_args.model_name_or_path, **hub_kwargs(model_args))[0]
    return saved.get("model_type") != NCELMConfig.model_type


if __name__ == "__main__":
    run_from_command_line(main, CONFIG_CLASSES)
