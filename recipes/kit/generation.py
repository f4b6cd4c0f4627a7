"""Generation over a list of prompts on any number of processes.

Every process generates for its own share of the prompts (`accelerator.prepare` shards them, repeating a
few to even out the last batch); `gather_for_metrics` collects the results and drops the repeats, and the
prompts' indices put them back in input order, so every prompt is answered exactly once, in order,
whatever the number of processes.

A language model continues one prompt at a time (`continue_prompts`): a prompt is run whole (a Transformer-XL
carries its memory through it) and never padded, which a model without an attention mask (Transformer-XL) could not
ignore.
"""

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase, Trainer

from data.files import write_jsonl
from data.lm_corpus import TextSplit, prompt_lines
from recipes.kit.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class GenerationArguments:
    """How the recipes that generate text decode it (evaluation of closed-book QA, `do_predict` of the LMs).

    Raises:
        ConfigError: `max_new_tokens` or `num_beams` below 1, `temperature` not > 0, or `top_p` outside (0, 1].
    """

    max_new_tokens: int = dataclasses.field(default=16, metadata={"help": "Most tokens generated per prompt."})
    num_beams: int = dataclasses.field(default=1, metadata={"help": "1: greedy or sampling; more: beam search."})
    do_sample: bool = dataclasses.field(default=False, metadata={"help": "Sample instead of the most likely token."})
    temperature: float = dataclasses.field(default=1.0, metadata={"help": "Sampling temperature (> 0)."})
    top_p: float = dataclasses.field(default=1.0, metadata={"help": "Nucleus sampling mass, in (0, 1]."})

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "num_beams"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must lie in (0, 1], got {self.top_p}")

    def generation_config(self, tokenizer: PreTrainedTokenizerBase, **kwargs: Any) -> GenerationConfig:
        """These settings, with the tokenizer's special tokens; `kwargs` (e.g. extra stop ids) win."""
        sampling = {"temperature": self.temperature, "top_p": self.top_p} if self.do_sample else {}
        settings = {
            "max_new_tokens": self.max_new_tokens,
            "num_beams": self.num_beams,
            "do_sample": self.do_sample,
            **sampling,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
        }
        return GenerationConfig(**{**settings, **kwargs})


def generate_in_order(
    trainer: Trainer, prompts: Sequence[str], generate_batch: Callable[[list[str]], list[str]]
) -> list[str]:
    """`generate_batch` applied to `prompts` in batches of `per_device_eval_batch_size`, spread over the
    processes (module docstring); every process gets all the outputs, in the order of `prompts`.

    Raises:
        RuntimeError: the gathered outputs are not one per prompt.
    """
    indexed = [{"index": i, "prompt": prompt} for i, prompt in enumerate(prompts)]
    loader = DataLoader(indexed, batch_size=trainer.args.per_device_eval_batch_size, collate_fn=_as_columns)
    done: list[tuple[int, str]] = []
    for batch in trainer.accelerator.prepare(loader):
        outputs = generate_batch(batch["prompt"])
        done += trainer.accelerator.gather_for_metrics(list(zip(batch["index"], outputs)))
    done.sort()
    if [i for i, _ in done] != list(range(len(prompts))):
        raise RuntimeError(f"generation returned {len(done)} outputs for {len(prompts)} prompts")
    return [output for _, output in done]


@torch.no_grad()
def continue_prompts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    generation_config: GenerationConfig,
) -> list[str]:
    """Each prompt's generated continuation, decoded without special tokens, one prompt at a time (module
    docstring)."""
    continuations = []
    for prompt in prompts:
        input_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(model.device)
        output = model.generate(input_ids=input_ids, generation_config=generation_config)
        continuations.append(tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True).strip())
    return continuations


def predict_continuations(trainer: Trainer, split: TextSplit, generation_config: GenerationConfig) -> None:
    """`do_predict` of the language-model recipes: each line of `split` is a prompt; its continuation
    (`continue_prompts`) goes to `output_dir/predictions.jsonl`, one `{"prompt", "continuation"}` per line,
    in input order. Every process must call it.

    Raises:
        DataError: an empty prompt line.
    """
    prompts = prompt_lines(split)
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    continuations = generate_in_order(
        trainer, prompts, lambda batch: continue_prompts(model, trainer.processing_class, batch, generation_config)
    )
    if trainer.is_world_process_zero():
        rows = [{"prompt": p, "continuation": c} for p, c in zip(prompts, continuations)]
        write_jsonl(Path(trainer.args.output_dir) / "predictions.jsonl", rows)


def _as_columns(rows: list[dict]) -> dict[str, list]:
    return {"index": [r["index"] for r in rows], "prompt": [r["prompt"] for r in rows]}
