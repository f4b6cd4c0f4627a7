"""Train a GPT-2 language model with noise-contrastive estimation (NCE); evaluate its exact perplexity.

    accelerate launch recipes/nce_lm/train.py recipes/nce_lm/configs/tiny.yaml

What it does: reads a corpus (a Hub data set such as `Salesforce/wikitext`, or local txt files), tokenizes
it (a checkpoint's tokenizer, or a word-level / byte-level BPE one trained on the training split), cuts the
token stream into shuffled blocks of `block_size` (as transformers' `run_clm.py` does), and builds an
`NCELMForCausalLM`: from a GPT-2 or NCE checkpoint (`model_name_or_path`) or from a config. The noise
distribution q is counted on the training tokens (`q ∝ (count + noise_smoothing) ** noise_power`) and set
before training, with the output bias starting at log q when the bias is new. Training (`model.train()`)
uses the sampled loss of `loss_type` (`nce`, `ranking`, or `full` softmax as the baseline); evaluation
(`model.eval()`) is always the exact softmax cross-entropy, so `eval_perplexity` is a true perplexity. It
also reports self-normalisation: mean / std of log Z(h) and the fraction of tokens with |log Z| > 1. The
logged training `loss` is the sampled loss, not a cross-entropy: never read exp(loss) as a perplexity.

Noise: each process draws from its own generator seeded with `seed + process_index`, so DDP ranks draw
different noise (still unbiased; the saved config records rank 0's seed). The generator state is saved in
every checkpoint (one file per rank, `recipes.checkpoint_state`) and restored on resume, so a resumed run
draws the noise the uninterrupted run would have drawn.

Modes (transformers' `run_clm.py`): `do_train` trains and saves; `do_eval` reports the exact perplexity of
`validation` and of `test` when there is one; `do_predict` reads each line of `test_file` as a prompt and
writes its continuation to `predictions.jsonl` (input order; `max_new_tokens`, `do_sample`, `temperature`,
`top_p`, `num_beams`). With `do_train false`, `model_name_or_path` is a trained folder (its tokenizer) and
only the metrics and predictions are written; nothing is tokenised for training.

Flags: every field of `NCELMArguments`, `GenerationArguments` and `transformers.TrainingArguments`, in the
YAML or on the command line (which wins). Errors: a misspelt key or an invalid value (NCE fields, `config_overrides`)
fails before anything is loaded; `block_size` above the model's `n_positions` or a corpus shorter than one
block fails after tokenizing. A run whose `output_dir` holds checkpoints resumes from the last one. The
folder written at the end loads with `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`.
"""

import logging
from dataclasses import dataclass, field

from transformers import TrainingArguments, default_data_collator

from custom_models.nce_lm import NCELMConfig, NCELMForCausalLM, count_tokens, noise_log_probs_from_counts
from recipes.arguments import LanguageModelArguments, run_from_command_line
from recipes.checkpoint_state import noise_generator_state
from recipes.common import save_card_and_push, start_run, train_and_evaluate
from recipes.generation import GenerationArguments, predict_continuations
from recipes.nce_lm.nce_trainer import NCETrainer, TokenBlocks

logger = logging.getLogger(__name__)


@dataclass
class NCELMArguments(LanguageModelArguments):
    config_class = NCELMConfig  # reads GPT-2 checkpoints too

    tokenizer_kind: str = field(default="word", metadata={"help": "Tokenizer trained on the fly: 'word' or 'bpe'."})
    # Data (with the corpus fields of TextCorpusArguments)
    block_size: int = field(default=128, metadata={"help": "Tokens per training / evaluation block."})
    # NCE
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
            raise ValueError(f"tokenizer_kind must be 'word' or 'bpe', got {self.tokenizer_kind!r}")
        if self.block_size < 2:
            raise ValueError(f"block_size must be >= 2, got {self.block_size}")
        if not self.noise_smoothing > 0:
            raise ValueError(f"noise_smoothing must be > 0, got {self.noise_smoothing}")
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


CONFIG_CLASSES = (NCELMArguments, GenerationArguments, TrainingArguments)


def main(
    script_args: NCELMArguments, generation_args: GenerationArguments, training_args: TrainingArguments
) -> dict[str, float]:
    start_run(training_args)
    corpus = script_args.text_splits(training_args)
    tokenizer, streams = script_args.tokenizer_and_streams(corpus, training_args, kind=script_args.tokenizer_kind)

    if script_args.model_name_or_path:
        model, loading_info = NCELMForCausalLM.from_pretrained(
            script_args.model_name_or_path, config=script_args.model_config(), output_loading_info=True
        )
        new_bias = "lm_head.bias" in loading_info["missing_keys"]  # a GPT-2 checkpoint: no output bias
    else:
        special = {"bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id}
        model, new_bias = NCELMForCausalLM(script_args.model_config(vocab_size=len(tokenizer), **special)), True
    # Each process draws its own noise: seeded with seed + rank (see the docstring); the generator is made
    # on first use, so setting the seed now is enough.
    model.config.noise_seed = training_args.seed + training_args.process_index
    if script_args.block_size > model.config.n_positions:
        raise ValueError(f"block_size {script_args.block_size} > the model's n_positions {model.config.n_positions}")
    logger.info("parameters: %.2fM; loss_type %s", model.num_parameters() / 1e6, model.config.loss_type)

    train_dataset = None
    if training_args.do_train:
        # The noise distribution: unigram counts of the training tokens; the output bias starts at log q when new.
        counts = count_tokens(streams["train"].split(1 << 22), vocab_size=model.config.vocab_size)  # int64 chunks
        log_q = noise_log_probs_from_counts(
            counts, noise_power=script_args.noise_power, smoothing=script_args.noise_smoothing
        )
        model.set_noise_distribution(log_q, reset_output_bias=new_bias)
        train_dataset = TokenBlocks(streams["train"], block_size=script_args.block_size)
    eval_datasets = {
        prefix: TokenBlocks(streams[split], block_size=script_args.block_size)
        for prefix, split in (("eval", "validation"), ("test", "test"))
        if split in streams and training_args.do_eval
    }
    sizes = {"train": train_dataset and len(train_dataset)} | {k: len(v) for k, v in eval_datasets.items()}
    logger.info("blocks of %d tokens: %s", script_args.block_size, sizes)

    trainer = NCETrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_datasets.get("eval"),
        data_collator=default_data_collator,  # equal-length blocks: stack, no padding
        processing_class=tokenizer,
        callbacks=[noise_generator_state(model)],
    )
    metrics = train_and_evaluate(trainer, eval_datasets=eval_datasets)
    if training_args.do_predict:
        predict_continuations(trainer, corpus["test"], generation_args.generation_config(tokenizer))
    if not training_args.do_train:
        return metrics
    save_card_and_push(
        trainer,
        title=f"GPT-2 language model trained with {model.config.loss_type} (NCE family) loss",
        data=script_args.dataset_name or f"local files: {script_args.train_file}, {script_args.validation_file}",
        metrics=metrics,
        notes=(
            "Load with `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`. Perplexity is the "
            "exact softmax over the vocabulary; `log_partition_*` measure how far log Z(h) is from 0."
        ),
    )
    return metrics


if __name__ == "__main__":
    run_from_command_line(main, CONFIG_CLASSES)
