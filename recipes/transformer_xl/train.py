"""Transformer-XL language modelling: ordered token streams, memory carried across steps.

    accelerate launch recipes/transformer_xl/train.py recipes/transformer_xl/configs/tiny.yaml

Memory only helps if batch t+1 continues batch t in every row, which plain `Trainer` batching breaks. So the
corpus becomes one token stream cut into contiguous rows (`data.streams`: per process in training,
`eval_num_streams` in all for evaluation, whatever the number of processes), and the trainer of
`recipes/transformer_xl/memory_trainer.py` carries the memory between steps, checkpoints it, and evaluates
by the paper's protocol (explained there, once). `loss_type` picks the training loss (`full`, `chunked`,
`adaptive`, `nce`, `ranking`); evaluation is exact whatever the loss. With `do_train false`,
`model_name_or_path` may also be a transformers 4.x checkpoint converted by
`custom_models.transfo_xl.convert_legacy` (`configs/wt103_eval.yaml`). Flags, modes and files: README.md,
"Transformer-XL language model".
"""

import logging
from dataclasses import dataclass, field

from transformers import AutoModelForCausalLM, TrainingArguments

from custom_models.transfo_xl import TransformerXLConfig, TransformerXLForCausalLM
from custom_models.transfo_xl.sampled_losses import SAMPLED_LOSS_TYPES, count_tokens, noise_log_probs_from_counts
from data.streams import StreamSegments
from recipes.arguments import ModelArguments, RecipeTrainingArguments, TextCorpusArguments
from recipes.checkpoint_state import noise_generator_state
from recipes.command_line import run_from_command_line
from recipes.common import (
    describe_data,
    evaluate,
    load_corpus,
    load_tokenizer_and_streams,
    save_card_and_push,
    start_run,
    stream_source,
    train,
)
from recipes.errors import ConfigError
from recipes.generation import GenerationArguments, predict_continuations
from recipes.model_config import check_model_config, load_model_config
from recipes.model_loading import new_model_kwargs, pretrained_kwargs
from recipes.run_lifecycle import load_trained_model, plan_run
from recipes.transformer_xl.memory_trainer import EvalMemory, MemoryTrainer

logger = logging.getLogger(__name__)


@dataclass
class TransformerXLModelArguments(ModelArguments):
    """The model's memory, in training and at evaluation, and its training loss."""

    config_class = TransformerXLConfig  # reads transformers 4.x TransfoXL folders too

    mem_len: int = field(default=128, metadata={"help": "Memory length per layer during training."})
    eval_mem_len: int | None = field(default=None, metadata={"help": "Memory length at evaluation."})
    eval_clamp_len: int | None = field(default=None, metadata={"help": "clamp_len at evaluation."})
    eval_same_length: bool | None = field(default=None, metadata={"help": "same_length at evaluation."})
    # Loss (training only; evaluation is always the exact softmax or adaptive softmax)
    loss_type: str | None = field(
        default=None,
        metadata={"help": "'full', 'chunked', 'adaptive', 'nce' or 'ranking'; None: adaptive with cutoffs, else full."},
    )
    num_noise_samples: int = field(default=1024, metadata={"help": "k noise ids per step for nce / ranking."})
    noise_power: float = field(default=1.0, metadata={"help": "Noise q ∝ training count ** noise_power, in (0, 1]."})

    def __post_init__(self) -> None:
        for name in ("mem_len", "eval_mem_len", "eval_clamp_len"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.attn_implementation not in (None, "eager"):  # its relative-position attention is its own code
            raise ValueError(
                f"attn_implementation {self.attn_implementation}: Transformer-XL computes its own relative-position "
                "attention; use eager (or null)"
            )
        super().__post_init__()  # the loss fields and config_overrides, checked by TransformerXLConfig

    def recipe_config_fields(self) -> dict:
        """The training memory and loss (`loss_type` only when given: the config derives it from cutoffs)."""
        fields = {"mem_len": self.mem_len, "num_noise_samples": self.num_noise_samples, "noise_power": self.noise_power}
        return fields if self.loss_type is None else {"loss_type": self.loss_type, **fields}


@dataclass
class TransformerXLDataArguments(TextCorpusArguments):
    """The corpus, read as contiguous segments of ordered streams."""

    tgt_len: int = field(default=128, metadata={"help": "Tokens per training segment."})
    eval_tgt_len: int | None = field(default=None, metadata={"help": "Segment length at evaluation."})
    eval_num_streams: int = field(
        default=16,
        metadata={
            "help": "Streams each evaluation split is cut into, whatever the number of processes (each evaluates "
            "its share, per_device_eval_batch_size at a time); 16 as the paper's large-model evaluation."
        },
    )
    shuffle_stream_offset: bool = field(default=False, metadata={"help": "Start streams at a new offset each epoch."})

    def __post_init__(self) -> None:
        for name in ("tgt_len", "eval_tgt_len", "eval_num_streams"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        super().__post_init__()


CONFIG_CLASSES = (
    TransformerXLModelArguments,
    TransformerXLDataArguments,
    GenerationArguments,
    RecipeTrainingArguments,
)


def main(
    model_args: TransformerXLModelArguments,
    data_args: TransformerXLDataArguments,
    generation_args: GenerationArguments,
    training_args: TrainingArguments,
) -> dict[str, float]:
    start_run(training_args)
    check_model_config(model_args)  # before anything loads: a bad config_overrides fails here
    plan_run(model_args, training_args)
    # Data
    corpus = load_corpus(data_args, training_args)
    # Tokenizer
    tokenizer, streams = load_tokenizer_and_streams(model_args, data_args, corpus, training_args, kind="word")
    # Model
    if not training_args.do_train:  # evaluate / predict with the folder as saved
        model = load_trained_model(TransformerXLForCausalLM, model_args)
    elif model_args.model_name_or_path:
        model = TransformerXLForCausalLM.from_pretrained(
            model_args.model_name_or_path, config=load_model_config(model_args), **pretrained_kwargs(model_args)
        )
    else:
        config = load_model_config(model_args, vocab_size=len(tokenizer))
        model = AutoModelForCausalLM.from_config(config, **new_model_kwargs(model_args))
    # Each process draws its own noise (nce / ranking): seeded with seed + rank, as in the NCE recipe; the
    # generator is made on first use, so setting the seed now is enough.
    model.config.noise_seed = training_args.seed + training_args.process_index
    if training_args.do_train and model.config.loss_type in SAMPLED_LOSS_TYPES:
        # The noise: unigram counts of the training stream, saved with the weights (`noise_log_probs`);
        # a new model's output bias starts at log q (self-normalised).
        counts = count_tokens(streams["train"].split(1 << 22), vocab_size=model.config.vocab_size)  # int64 chunks
        log_q = noise_log_probs_from_counts(counts, noise_power=model.config.noise_power)
        model.set_noise_distribution(log_q, reset_output_bias=not model_args.model_name_or_path)
    logger.info("parameters: %.2fM; loss_type %s", model.num_parameters() / 1e6, model.config.loss_type)
    # Trainer
    world = {"rank": training_args.process_index, "world_size": training_args.world_size}
    train_dataset = None
    if training_args.do_train:
        train_dataset = StreamSegments(
            streams["train"],
            num_streams=training_args.per_device_train_batch_size * training_args.world_size,
            tgt_len=data_args.tgt_len,
            shuffle_offset=data_args.shuffle_stream_offset,
            seed=training_args.seed,
            source=stream_source(corpus, "train"),
            num_streams_from="per_device_train_batch_size",
            **world,
        )
    eval_datasets = {
        prefix: StreamSegments(
            streams[split],
            num_streams=data_args.eval_num_streams,  # the same cut on any number of processes
            tgt_len=data_args.eval_tgt_len or data_args.tgt_len,
            max_rows_per_batch=training_args.per_device_eval_batch_size,
            source=stream_source(corpus, split),
            num_streams_from="eval_num_streams",
            **world,
        )
        for prefix, split in (("eval", "validation"), ("test", "test"))
        if split in streams and training_args.do_eval
    }
    trainer = MemoryTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_datasets.get("eval"),
        processing_class=tokenizer,
        eval_memory=EvalMemory(
            mem_len=model_args.eval_mem_len,
            clamp_len=model_args.eval_clamp_len,
            same_length=model_args.eval_same_length,
        ),
        callbacks=[noise_generator_state(model)] if model.config.loss_type in SAMPLED_LOSS_TYPES else None,
    )
    # Train
    if training_args.do_train:
        train(trainer)
    # Evaluate
    metrics = evaluate(trainer, eval_datasets) if training_args.do_eval else {}
    # Predict
    if training_args.do_predict:
        predict_continuations(trainer, corpus["test"], generation_args.generation_config(tokenizer))
    # Save, card, push
    if training_args.do_train:
        save_card_and_push(
            trainer,
            title="Transformer-XL language model",
            data=describe_data(data_args),
            metrics=metrics,
            notes="Load with `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`.",
            arguments=(model_args, data_args, generation_args, training_args),
        )
    return metrics


if __name__ == "__main__":
    run_from_command_line(main, CONFIG_CLASSES)
