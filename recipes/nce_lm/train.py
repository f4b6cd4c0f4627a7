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
every checkpoint (one file per rank) and restored on resume, so a resumed run draws the noise the
uninterrupted run would have drawn.

Flags: every field of `NCELMArguments` below and of `transformers.TrainingArguments`, in the YAML or on
the command line (which wins). Errors: a misspelt key or an invalid value (NCE fields, `config_overrides`)
fails before anything is loaded; `block_size` above the model's `n_positions` or a corpus shorter than one
block fails after tokenizing. A run whose `output_dir` holds checkpoints resumes from the last one. The
folder written at the end loads with `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`.
"""

import os
from dataclasses import dataclass, field

import torch
import transformers
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset, Subset
from transformers import Trainer, TrainingArguments, default_data_collator, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from custom_models.nce_lm import NCELMConfig, NCELMForCausalLM, count_tokens, noise_log_probs_from_counts
from data.metrics import perplexity
from data.token_cache import prepare_token_streams
from data.tokenizers import EOS_TOKEN
from recipes.common import (
    LogPartitionSums,
    TextCorpusArguments,
    checkpoint_to_resume,
    launch_command,
    load_or_train_tokenizer,
    model_card_text,
    parse_overrides,
    run_from_command_line,
    save_model_code,
    setup_logging,
    write_card_and_push,
)

logger = transformers.utils.logging.get_logger(__name__)


@dataclass
class NCELMArguments(TextCorpusArguments):
    # Model
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A GPT-2 or NCE checkpoint (Hub name or folder); None builds one."}
    )
    config_overrides: str | None = field(
        default=None, metadata={"help": "Config fields, e.g. 'n_layer=2,n_embd=64,n_head=2' (win over the rest)."}
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer to load; None: the model's."})
    tokenizer_kind: str = field(default="word", metadata={"help": "Tokenizer trained on the fly: 'word' or 'bpe'."})
    tokenizer_vocab_size: int = field(default=32000, metadata={"help": "Vocabulary of a tokenizer trained here."})
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
    eval_chunk_size: int = field(default=4096, metadata={"help": "Tokens per chunk of the exact log-softmax."})

    def __post_init__(self) -> None:
        if self.tokenizer_kind not in ("word", "bpe"):
            raise ValueError(f"tokenizer_kind must be 'word' or 'bpe', got {self.tokenizer_kind!r}")
        for name in ("tokenizer_vocab_size", "block_size"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)}")
        if not self.noise_smoothing > 0:
            raise ValueError(f"noise_smoothing must be > 0, got {self.noise_smoothing}")
        NCELMConfig(vocab_size=2, **self.nce_fields())  # the config's own checks, before anything is loaded
        parse_overrides(self.config_overrides)

    def nce_fields(self) -> dict:
        names = ("loss_type", "num_noise_samples", "noise_power", "noise_sharing", "accidental_hits",
                 "log_partition", "learn_log_partition", "eval_chunk_size")  # fmt: skip
        return {name: getattr(self, name) for name in names}


class TokenBlocks(Dataset):
    """`input_ids` = `labels` = block i of the stream cut into `block_size` tokens (the tail is dropped;
    the model shifts the labels). The blocks are views into `stream` (memory-mapped int32 ids from
    `data.token_cache`); only the block handed out is copied, as int64."""

    def __init__(self, stream: torch.Tensor, *, block_size: int) -> None:
        if stream.numel() < block_size:
            raise ValueError(f"{stream.numel()} tokens: fewer than one block of block_size {block_size}")
        self.blocks = stream[: stream.numel() // block_size * block_size].view(-1, block_size)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        block = self.blocks[i].long()
        return {"input_ids": block, "labels": block}


class NCETrainer(Trainer):
    """`Trainer` that (1) evaluates token-weighted, with the model's exact loss and log Z figures, one batch of
    full-vocabulary logits alive at a time, and (2) saves / restores the per-rank noise generator state."""

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        rank, world = self.args.process_index, self.args.world_size
        # Every rank scores its own blocks, none twice (no padding of the last batch as a sharded loader does).
        shard = Subset(dataset, range(rank, len(dataset), world))
        loader = DataLoader(shard, batch_size=self.args.per_device_eval_batch_size, collate_fn=default_data_collator)
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        sums = torch.zeros(2, dtype=torch.float64, device=self.args.device)  # tokens, nll
        log_partition = LogPartitionSums(self.args.device)
        with torch.no_grad():
            for batch in loader:
                batch = self._prepare_inputs(batch)
                with self.autocast_smart_context_manager():
                    out = model(**batch)
                n = batch["labels"][:, 1:].ne(-100).sum().double()
                if n == 0:  # no scored token: the batch means are NaN
                    continue
                sums += n * torch.stack([n.new_ones(()), out.loss.double()])
                log_partition.add(out, n)
        model.train(was_training)
        tokens, nll = self.accelerator.reduce(sums, reduction="sum").tolist()
        loss = nll / tokens
        metrics = {
            f"{metric_key_prefix}_loss": loss,
            f"{metric_key_prefix}_perplexity": perplexity(loss),
            **log_partition.metrics(self, metric_key_prefix),
            f"{metric_key_prefix}_tokens": int(tokens),
        }
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _noise_state_file(self, checkpoint_dir: str) -> str:
        return os.path.join(checkpoint_dir, f"noise_generator_rank{self.args.process_index}.safetensors")

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        checkpoint_dir = os.path.join(
            self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        )
        state = self.accelerator.unwrap_model(self.model).noise_generator.get_state()
        save_file({"state": state}, self._noise_state_file(checkpoint_dir))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        state_file = self._noise_state_file(resume_from_checkpoint)
        if os.path.isfile(state_file):  # absent: another world size, or an older run; noise restarts from its seed
            self.accelerator.unwrap_model(self.model).noise_generator.set_state(load_file(state_file)["state"])


CONFIG_CLASSES = (NCELMArguments, TrainingArguments)


def main(script_args: NCELMArguments, training_args: TrainingArguments) -> dict[str, float]:
    set_seed(training_args.seed)
    setup_logging(training_args)
    corpus = script_args.text_splits(training_args)
    # One process per machine counts and tokenises the corpus into the cache; the others then map its files.
    with training_args.main_process_first(desc="tokenizer and token streams"):
        tokenizer = load_or_train_tokenizer(
            training_args, script_args.tokenizer_name or script_args.model_name_or_path, corpus["train"],
            kind=script_args.tokenizer_kind, vocab_size=script_args.tokenizer_vocab_size,
            cache_dir=script_args.token_cache_dir,
        )  # fmt: skip
        # Word-level corpora end each line with `<eos>`; other tokenizers read the lines as given (raw
        # WikiText rows keep their own "\n").
        add_eos = EOS_TOKEN in tokenizer.get_vocab()
        streams = prepare_token_streams(corpus, tokenizer, add_eos=add_eos, cache_dir=script_args.token_cache_dir)
    logger.info("tokens: %s; vocabulary %d", {s: t.numel() for s, t in streams.items()}, len(tokenizer))

    # Each process draws its own noise: seeded with seed + rank (see the docstring).
    nce_fields = {**script_args.nce_fields(), "noise_seed": training_args.seed + training_args.process_index}
    overrides = parse_overrides(script_args.config_overrides)
    if script_args.model_name_or_path:
        model, loading_info = NCELMForCausalLM.from_pretrained(
            script_args.model_name_or_path, output_loading_info=True, **nce_fields, **overrides
        )
        new_bias = "lm_head.bias" in loading_info["missing_keys"]  # a GPT-2 checkpoint: no output bias
    else:
        special = {"bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id}
        config = NCELMConfig(**{"vocab_size": len(tokenizer), **special, **nce_fields, **overrides})
        model, new_bias = NCELMForCausalLM(config), True
    if script_args.block_size > model.config.n_positions:
        raise ValueError(f"block_size {script_args.block_size} > the model's n_positions {model.config.n_positions}")
    logger.info(
        "parameters: %.2fM; loss_type %s", sum(p.numel() for p in model.parameters()) / 1e6, model.config.loss_type
    )

    # The noise distribution: unigram counts of the training tokens; the output bias starts at log q when new.
    counts = count_tokens(streams["train"].split(1 << 22), vocab_size=model.config.vocab_size)  # int64 per chunk
    log_q = noise_log_probs_from_counts(
        counts, noise_power=script_args.noise_power, smoothing=script_args.noise_smoothing
    )
    model.set_noise_distribution(log_q, reset_output_bias=new_bias)

    train_dataset = TokenBlocks(streams["train"], block_size=script_args.block_size)
    eval_dataset = (
        TokenBlocks(streams["validation"], block_size=script_args.block_size) if "validation" in streams else None
    )
    logger.info(
        "blocks of %d tokens: train %d, eval %s",
        script_args.block_size,
        len(train_dataset),
        eval_dataset and len(eval_dataset),
    )

    if training_args.should_save:
        save_model_code(model, training_args.output_dir)
    trainer = NCETrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=default_data_collator,  # equal-length blocks: stack, no padding
        processing_class=tokenizer,
    )
    train_result = trainer.train(resume_from_checkpoint=checkpoint_to_resume(training_args))
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()  # trainer_state.json: the log history (every logged loss)
    metrics = trainer.evaluate() if eval_dataset is not None else {}
    trainer.save_metrics("eval", metrics)
    if "test" in streams:
        test_metrics = trainer.evaluate(
            TokenBlocks(streams["test"], block_size=script_args.block_size), metric_key_prefix="test"
        )
        trainer.save_metrics("test", test_metrics)
        metrics.update(test_metrics)
    trainer.save_model()

    card = model_card_text(
        title=f"GPT-2 language model trained with {model.config.loss_type} (NCE family) loss",
        command=launch_command(),
        data=script_args.dataset_name or f"local files: {script_args.train_file}, {script_args.validation_file}",
        metrics=metrics,
        notes=(
            "Load with `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`. Perplexity is the "
            "exact softmax over the vocabulary; `log_partition_*` measure how far log Z(h) is from 0."
        ),
    )
    write_card_and_push(trainer, card)
    return metrics


if __name__ == "__main__":
    run_from_command_line(main, CONFIG_CLASSES)
