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

import torch
from transformers import AutoModelForCausalLM, TrainingArguments

from custom_models.transfo_xl import TransformerXLConfig
from custom_models.transfo_xl.sampled_losses import SAMPLED_LOSS_TYPES
from data.lm_corpus import TextSplit
from data.streams import StreamSegments
from recipes.kit.arguments import ModelArguments, RecipeTrainingArguments, TextCorpusArguments
from recipes.kit.callbacks import noise_generator_state
from recipes.kit.command_line import run_from_command_line
from recipes.kit.data_steps import describe_data, load_corpus, load_tokenizer_and_streams, stream_source
from recipes.kit.errors import ConfigError
from recipes.kit.generation import GenerationArguments, predict_continuations
from recipes.kit.language_models import set_training_noise
from recipes.kit.model_loading import load_model
from recipes.kit.run_steps import evaluate_splits, save_card_and_push, start_run, train
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
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if self.attn_implementation not in (None, "eager"):  # its relative-position attention is its own code
            raise ConfigError(
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
    # Run
    start_run(model_args, training_args)
    # Data
    corpus = load_corpus(data_args, training_args)
    # Tokenizer
    tokenizer, streams = load_tokenizer_and_streams(model_args, data_args, corpus, training_args, kind="word")
    # Model
    model = load_model(
        AutoModelForCausalLM, model_args, training_args, new_model_fields={"vocab_size": len(tokenizer)}, lengths={}
    )
    model.config.noise_seed = training_args.seed + training_args.process_index  # each process: its own noise
    samples_noise = model.config.loss_type in SAMPLED_LOSS_TYPES
    if training_args.do_train and samples_noise:
        new_bias = not model_args.model_name_or_path
        set_training_noise(model, streams["train"], noise_power=model.config.noise_power, reset_output_bias=new_bias)
    # Trainer
    eval_datasets = evaluation_segments(streams, corpus, data_args, training_args)
    trainer = MemoryTrainer(
        model=model,
        args=training_args,
        train_dataset=training_segments(streams, corpus, data_args, training_args),
        eval_dataset=eval_datasets.get("eval"),
        processing_class=tokenizer,
        eval_memory=EvalMemory(
            mem_len=model_args.eval_mem_len,
            clamp_len=model_args.eval_clamp_len,
            same_length=model_args.eval_same_length,
        ),
        callbacks=[noise_generator_state(model)] if samples_noise else None,
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
            title="Transformer-XL language model",
            data=describe_data(data_args),
            metrics=metrics,
            notes="Load with `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`.",
            arguments=(model_args, data_args, generation_args, training_args),
        )
    return metrics


def training_segments(
    streams: dict[str, torch.Tensor],
    corpus: dict[str, TextSplit],
    data_args: TransformerXLDataArguments,
    training_args: TrainingArguments,
) -> StreamSegments | None:
    """The training stream cut into `per_device_train_batch_size` rows per process, each row a contiguous stream
    read `tgt_len` tokens a step (`data.streams.StreamSegments`); None without `do_train`."""
    if not training_args.do_train:
        return None
    return StreamSegments(
        streams["train"],
        num_streams=training_args.per_device_train_batch_size * training_args.world_size,
        tgt_len=data_args.tgt_len,
        shuffle_offset=data_args.shuffle_stream_offset,
        seed=training_args.seed,
        source=stream_source(corpus, "train"),
        num_streams_from="per_device_train_batch_size",
        rank=training_args.process_index,
        world_size=training_args.world_size,
    )


def evaluation_segments(
    streams: dict[str, torch.Tensor],
    corpus: dict[str, TextSplit],
    data_args: TransformerXLDataArguments,
    training_args: TrainingArguments,
) -> dict[str, StreamSegments]:
    """With `do_eval`, the validation and test streams (metric prefixes `eval`, `test`), each cut into
    `eval_num_streams` rows in all, whatever the number of processes (each process evaluates its share,
    `per_device_eval_batch_size` rows at a time), so the metrics do not depend on the launch."""
    if not training_args.do_eval:
        return {}
    return {
        prefix: StreamSegments(
            streams[split],
            num_streams=data_args.eval_num_streams,
            tgt_len=data_args.eval_tgt_len or data_args.tgt_len,
            max_rows_per_batch=training_args.per_device_eval_batch_size,
            source=stream_source(corpus, split),
            num_streams_from="eval_num_streams",
            rank=training_args.process_index,
            world_size=training_args.world_size,
        )
        for prefix, split in (("eval", "validation"), ("test", "test"))
        if split in streams
    }


if __name__ == "__main__":
    run_from_command_line(main, CONFIG_CLASSES)
