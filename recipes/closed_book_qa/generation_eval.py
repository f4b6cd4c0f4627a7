"""Evaluation by generation for decoder-only QA models: `Trainer.evaluate` that answers and scores questions.

`Trainer` has no `predict_with_generate` for causal LMs, so `GenerationEvalTrainer` does it: the `question`
rows of its data set are shared out over the processes (`recipes.kit.generation.generate_in_order`: each question
answered exactly once, in order), each batch of prompts is left-padded and passed to `generate` (greedy, beam
or sampling, stopping at EOS or a newline, or at a chat template's end of turn), and when the rows have
`answers`, exact match / token F1 against all of them are logged as `eval_exact_match` / `eval_f1`. The main
process writes one jsonl row per question.

A prompt and its `max_new_tokens` must fit in the model's positions (`recipes.kit.model_config.max_positions`):
past them the position lookup fails in the middle of an evaluation. So prompts are shortened to `max_seq_length`, or
fewer, said in one warning line (`prompt_length_that_fits`): a chat prompt by whole turns, then on the left.
"""

import logging
from pathlib import Path

import datasets
import torch
from transformers import GenerationConfig, PretrainedConfig
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

from data.files import write_jsonl
from data.metrics import exact_match, token_f1
from data.qa_features import DEFAULT_PROMPT_TEMPLATE, QAPrompts, TemplatePrompts, left_padded_prompts
from recipes.kit.errors import ConfigError
from recipes.kit.generation import generate_in_order
from recipes.kit.model_config import max_positions
from recipes.kit.trainers import OwnEvaluationTrainer

logger = logging.getLogger(__name__)


def prompt_length_that_fits(config: PretrainedConfig, *, max_seq_length: int, max_new_tokens: int) -> int:
    """The length prompts are cut to (on the left) for generation: `max_seq_length`, or fewer, so that a prompt and
    its `max_new_tokens` fit in the model's positions (module docstring).

    Raises:
        ConfigError: not even one prompt token fits beside `max_new_tokens`.
    """
    limit = max_positions(config)
    if limit is None or max_seq_length + max_new_tokens <= limit:
        return max_seq_length
    if max_new_tokens >= limit:
        raise ConfigError(f"max_new_tokens {max_new_tokens} leaves no prompt token in the model's {limit} positions")
    logger.warning(
        "prompts cut to their last %d tokens for generation: max_seq_length %d + max_new_tokens %d > %d, the model's "
        "positions",
        limit - max_new_tokens,
        max_seq_length,
        max_new_tokens,
        limit,
    )
    return limit - max_new_tokens


def score_predictions(predictions: list[str], gold_answers: list[list[str]]) -> tuple[list[dict], dict[str, float]]:
    """Per-question `em` / `f1` (max over gold answers, SQuAD normalisation) and their means."""
    scores = [{"em": exact_match(p, golds), "f1": token_f1(p, golds)} for p, golds in zip(predictions, gold_answers)]
    n = max(len(scores), 1)
    return scores, {"exact_match": sum(s["em"] for s in scores) / n, "f1": sum(s["f1"] for s in scores) / n}


@torch.no_grad()
def generate_answers(
    model, prompts: QAPrompts, texts: list[str], *, max_prompt_length: int, generation_config, **kwargs
) -> list[str]:
    """Answers for one batch of prompt `texts` (`prompts.prompt_texts`), generated together, left-padded."""
    ids = prompts.encode_prompts(texts, max_length=max_prompt_length)
    batch = left_padded_prompts(ids, prompts.tokenizer.pad_token_id)
    batch = {name: tensor.to(model.device) for name, tensor in batch.items()}
    output = model.generate(**batch, generation_config=generation_config, **kwargs)
    new_tokens = output[:, batch["input_ids"].shape[1] :]  # (b, generated_len): what follows each prompt
    return [prompts.clean(text) for text in prompts.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


class GenerationEvalTrainer(OwnEvaluationTrainer):
    """A `Trainer` whose evaluation answers the `question` rows of a data set by generation and, when the
    rows have `answers`, scores them. `eval_dataset` holds the raw rows (not token ids). Each evaluation
    writes its answers to `output_dir`: `predictions.jsonl` for the `predict` prefix (`do_predict`),
    `<prefix>_predictions.jsonl` otherwise. `prompts`: how the questions become prompts (`data.qa_features`);
    default: `TemplatePrompts` of `prompt_template`."""

    def __init__(
        self,
        *args,
        max_prompt_length: int,
        generation_config: GenerationConfig,
        prompts: QAPrompts | None = None,
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.prompts = prompts or TemplatePrompts(self.processing_class, prompt_template)
        self.max_prompt_length = max_prompt_length
        self.answer_generation_config = generation_config

    def evaluation_metrics(self, model, dataset: datasets.Dataset, metric_key_prefix: str) -> dict[str, float]:
        def answer(texts: list[str]) -> list[str]:
            return generate_answers(
                model,
                self.prompts,
                texts,
                max_prompt_length=self.max_prompt_length,
                generation_config=self.answer_generation_config,
                synced_gpus=self.is_fsdp_enabled or is_deepspeed_zero3_enabled(),
            )

        messages = dataset["messages"] if "messages" in dataset.column_names else None
        texts = self.prompts.prompt_texts(dataset["question"], messages, max_length=self.max_prompt_length)
        predictions = generate_in_order(self, texts, answer)
        rows = [{"question": q, "prediction": p} for q, p in zip(dataset["question"], predictions)]
        metrics = {"samples": len(dataset)}
        if "answers" in dataset.column_names:
            scores, means = score_predictions(predictions, dataset["answers"])
            rows = [{**row, "answers": golds, **score} for row, golds, score in zip(rows, dataset["answers"], scores)]
            metrics |= means
        if self.is_world_process_zero():
            name = "predictions.jsonl" if metric_key_prefix == "predict" else f"{metric_key_prefix}_predictions.jsonl"
            write_jsonl(Path(self.args.output_dir) / name, rows)
        return metrics
