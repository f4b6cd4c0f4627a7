"""Train and evaluate Transformer-XL on a text corpus, memory carried across segments.

    accelerate launch recipes/transformer_xl/train.py recipes/transformer_xl/configs/tiny.yaml
    accelerate launch recipes/transformer_xl/train.py recipes/transformer_xl/configs/wt103_eval.yaml \
        --model_name_or_path CONVERTED_WT103   # evaluate only (do_train false), the paper's protocol

What it does: reads a corpus (a Hub data set such as `Salesforce/wikitext`, or local txt files), turns
it into one token stream with an `<eos>` per line, cuts it into `per_device_train_batch_size` streams
per process and walks them in order (`data.streams`), carrying each layer's memory from one step to the
next (`MemoryTrainer`). It evaluates by the paper's protocol (Dai et al. 2019, arXiv 1901.02860): the
whole validation stream with memory, with its own `eval_tgt_len` / `eval_mem_len` / `eval_clamp_len` /
`eval_same_length`, and reports loss, perplexity and bits per token; a `test` split (`test_file`, or the
Hub data set's) is evaluated the same way (`test_*` metrics). The model folder written at the end
(weights, config, tokenizer, modeling code, model card) loads anywhere with
`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`.

Losses: `loss_type` picks the training loss: `full`, `chunked` (exact, never the whole logit matrix),
`adaptive` (needs `cutoffs`), `nce` or `ranking` (see `TransformerXLConfig`). For the last two the noise
q ∝ (count + 1) ** `noise_power` is counted on the training stream and saved with the weights; each process
draws `num_noise_samples` ids per step from its own generator (seed + rank), whose state every checkpoint
keeps, so a resumed run draws the noise the uninterrupted run would have drawn. Evaluation is exact whatever
the loss, plus log Z statistics for a full output table.

Modes, as in transformers' example scripts: `do_train` trains (and saves), `do_eval` evaluates `validation`
and `test` (when present) by the paper's protocol, `do_predict` reads each line of `test_file` as a prompt
and writes its continuation to `predictions.jsonl` (input order; the memory is carried through the prompt;
`max_new_tokens`, `do_sample`, `temperature`, `top_p`, `num_beams`). With `do_train false` the model and
its tokenizer come from `model_name_or_path` (one of ours, or a folder written by
`custom_models.transfo_xl.convert_legacy`), nothing is trained or saved but the metrics
(`eval_results.json`, `test_results.json`) and predictions, and the training split is not tokenised.

Flags: every field of `TransformerXLArguments`, `GenerationArguments` and `transformers.TrainingArguments`,
in the YAML or on the command line (which wins). Errors: a misspelt key or an invalid value (in the YAML, in
`config_overrides`) fails before anything is loaded, and so does a run with nothing to do or an
evaluation-only run without `model_name_or_path`; a missing data file fails naming it. A run whose
`output_dir` holds checkpoints resumes from the last one, memory included.
"""

import logging
from dataclasses import dataclass, field

from transformers import TrainingArguments

from custom_models.transfo_xl import TransformerXLConfig, TransformerXLForCausalLM
from custom_models.transfo_xl.sampled_losses import SAMPLED_LOSS_TYPES, count_tokens, noise_log_probs_from_counts
from data.streams import StreamSegments
from recipes.arguments import LanguageModelArguments, RecipeTrainingArguments, run_from_command_line
from recipes.checkpoint_state import noise_generator_state
from recipes.common import save_card_and_push, start_run, train_and_evaluate
from recipes.generation import GenerationArguments, predict_continuations
from recipes.run_lifecycle import load_trained_model, plan_run
from recipes.transformer_xl.memory_trainer import EvalMemory, MemoryTrainer

logger = logging.getLogger(__name__)


@dataclass
class TransformerXLArguments(LanguageModelArguments):
    config_class = TransformerXLConfig  # reads transformers 4.x TransfoXL folders too

    # Memory
    tgt_len: int = field(default=128, metadata={"help": "Tokens per training segment."})
    mem_len: int = field(default=128, metadata={"help": "Memory length per layer during training."})
    eval_tgt_len: int | None = field(default=None, metadata={"help": "Segment length at evaluation."})
    eval_mem_len: int | None = field(default=None, metadata={"help": "Memory length at evaluation."})
    eval_clamp_len: int | None = field(default=None, metadata={"help": "clamp_len at evaluation."})
    eval_same_length: bool | None = field(default=None, metadata={"help": "same_length at evaluation."})
    shuffle_stream_offset: bool = field(default=False, metadata={"help": "Start streams at a new offset each epoch."})
    # Loss (training only; evaluation is always the exact softmax or adaptive softmax)
    loss_type: str | None = field(
        default=None,
        metadata={"help": "'full', 'chunked', 'adaptive', 'nce' or 'ranking'; None: adaptive with cutoffs, else full."},
    )
    num_noise_samples: int = field(default=1024, metadata={"help": "k noise ids per step for nce / ranking."})
    noise_power: float = field(default=1.0, metadata={"help": "Noise q ∝ training count ** noise_power, in (0, 1]."})

    def __post_init__(self) -> None:
        for name in ("tgt_len", "eval_tgt_len"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name in ("mem_len", "eval_mem_len", "eval_clamp_len"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        super().__post_init__()  # the loss fields and config_overrides, checked by TransformerXLConfig

    def recipe_config_fields(self) -> dict:
        """The training memory and loss (`loss_type` only when given: the config derives it from cutoffs)."""
        fields = {"mem_len": self.mem_len, "num_noise_samples": self.num_noise_samples, "noise_power": self.noise_power}
        return fields if self.loss_type is None else {"loss_type": self.loss_type, **fields}


CONFIG_CLASSES = (TransformerXLArguments, GenerationArguments, RecipeTrainingArguments)


def main(
    script_args: TransformerXLArguments, generation_args: GenerationArguments, training_args: TrainingArguments
) -> dict[str, float]:
    start_run(training_args)
    plan_run(script_args, training_args)
    corpus = script_args.text_splits(training_args)
    tokenizer, streams = script_args.tokenizer_and_streams(corpus, training_args, kind="word")

    if not training_args.do_train:  # evaluate / predict with the folder as saved
        model = load_trained_model(TransformerXLForCausalLM, script_args)
    elif script_args.model_name_or_path:
        model = TransformerXLForCausalLM.from_pretrained(
            script_args.model_name_or_path, config=script_args.model_config()
        )
    else:
        model = TransformerXLForCausalLM(script_args.model_config(vocab_size=len(tokenizer)))
    # Each process draws its own noise (nce / ranking): seeded with seed + rank, as in the NCE recipe; the
    # generator is made on first use, so setting the seed now is enough.
    model.config.noise_seed = training_args.seed + training_args.process_index
    if training_args.do_train and model.config.loss_type in SAMPLED_LOSS_TYPES:
        # The noise: unigram counts of the training stream, saved with the weights (`noise_log_probs`);
        # a new model's output bias starts at log q (self-normalised).
        counts = count_tokens(streams["train"].split(1 << 22), vocab_size=model.config.vocab_size)  # int64 chunks
        log_q = noise_log_probs_from_counts(counts, noise_power=model.config.noise_power)
        model.set_noise_distribution(log_q, reset_output_bias=not script_args.model_name_or_path)
    logger.info("parameters: %.2fM; loss_type %s", model.num_parameters() / 1e6, model.config.loss_type)

    world = {"rank": training_args.process_index, "world_size": training_args.world_size}
    train_dataset = None
    if training_args.do_train:
        train_dataset = StreamSegments(
            streams["train"],
            num_streams=training_args.per_device_train_batch_size * training_args.world_size,
            tgt_len=script_args.tgt_len,
            shuffle_offset=script_args.shuffle_stream_offset,
            seed=training_args.seed,
            **world,
        )
    eval_datasets = {
        prefix: StreamSegments(
            streams[split],
            num_streams=training_args.per_device_eval_batch_size * training_args.world_size,
            tgt_len=script_args.eval_tgt_len or script_args.tgt_len,
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
            mem_len=script_args.eval_mem_len,
            clamp_len=script_args.eval_clamp_len,
            same_length=script_args.eval_same_length,
        ),
        callbacks=[noise_generator_state(model)] if model.config.loss_type in SAMPLED_LOSS_TYPES else None,
    )
    metrics = train_and_evaluate(trainer, eval_datasets=eval_datasets)
    if training_args.do_predict:
        predict_continuations(trainer, corpus["test"], generation_args.generation_config(tokenizer))
    if not training_args.do_train:
        return metrics
    save_card_and_push(
        trainer,
        title="Transformer-XL language model",
        data=script_args.dataset_name or f"local files: {script_args.train_file}, {script_args.validation_file}",
        metrics=metrics,
        notes="Load with `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`.",
    )
    return metrics


if __name__ == "__main__":
    run_from_command_line(main, CONFIG_CLASSES)
