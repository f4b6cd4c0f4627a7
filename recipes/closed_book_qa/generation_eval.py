"""Evaluation by generation for decoder-only QA models: `Trainer.evaluate` that answers and scores questions.

`Trainer` has no `predict_with_generate` for causal LMs, so `GenerationEvalTrainer.evaluate` does it:
the `question` / `answers` rows of its eval data set are sharded over the processes, each batch of prompts is
left-padded and passed to `generate` (greedy or beam, stopping at EOS or a newline), the answers are gathered
with `accelerator.gather_for_metrics` (which drops the samples repeated to even out the last batch, so each
question is scored exactly once), and exact match / token F1 against all gold answers are logged as
`eval_exact_match` / `eval_f1`. The main process writes one jsonl row per question to `predictions_file`.
"""

import json
import logging
from pathlib import Path

import datasets
import torch
from torch.utils.data import DataLoader
from transformers import GenerationConfig, PreTrainedTokenizerBase, Trainer
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

from data.metrics import exact_match, token_f1
from data.qa_features import ANSWER_PREFIX, left_padded_prompts

logger = logging.getLogger(__name__)


def answer_generation_config(
    tokenizer: PreTrainedTokenizerBase, *, max_new_tokens: int, num_beams: int
) -> GenerationConfig:
    """Deterministic decoding of a short answer that stops at EOS or at a newline token (if one exists)."""
    stop_ids = [tokenizer.eos_token_id]
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    if len(newline) == 1 and newline[0] not in stop_ids:
        stop_ids.append(newline[0])
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        do_sample=False,
        eos_token_id=stop_ids,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


def clean_answer(generated: str) -> str:
    """The answer in generated text: up to the first newline, without the leading space."""
    return generated.split("\n", 1)[0].removeprefix(ANSWER_PREFIX).strip()


def score_predictions(predictions: list[str], gold_answers: list[list[str]]) -> tuple[list[dict], dict[str, float]]:
    """Per-question `em` / `f1` (max over gold answers, SQuAD normalisation) and their means."""
    scores = [{"em": exact_match(p, golds), "f1": token_f1(p, golds)} for p, golds in zip(predictions, gold_answers)]
    n = max(len(scores), 1)
    return scores, {"exact_match": sum(s["em"] for s in scores) / n, "f1": sum(s["f1"] for s in scores) / n}


@torch.no_grad()
def generate_answers(
    model, tokenizer, questions: list[str], *, template: str, max_prompt_length: int, generation_config, **kwargs
) -> list[str]:
    """Answers for one batch of questions, generated together from left-padded prompts."""
    batch = left_padded_prompts(questions, tokenizer, template=template, max_length=max_prompt_length)
    batch = {name: tensor.to(model.device) for name, tensor in batch.items()}
    output = model.generate(**batch, generation_config=generation_config, **kwargs)
    new_tokens = output[:, batch["input_ids"].shape[1] :]  # (b, generated_len): what follows each prompt
    return [clean_answer(text) for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


class GenerationEvalTrainer(Trainer):
    """A `Trainer` whose `evaluate` generates answers for `question` / `answers` rows and scores them.

    `eval_dataset` holds the raw rows (not token ids).
    """

    def __init__(
        self,
        *args,
        prompt_template: str,
        max_prompt_length: int,
        generation_config: GenerationConfig,
        predictions_file: str | None = "predictions.jsonl",
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.prompt_template = prompt_template
        self.max_prompt_length = max_prompt_length
        self.answer_generation_config = generation_config
        self.predictions_file = predictions_file

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset: datasets.Dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        indexed = [{"index": i, "question": q} for i, q in enumerate(dataset["question"])]
        loader = DataLoader(indexed, batch_size=self.args.per_device_eval_batch_size, collate_fn=_as_columns)
        loader = self.accelerator.prepare(loader)  # shards; repeats a few rows to even out the last batch
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        answered: list[tuple[int, str]] = []
        for batch in loader:
            answers = generate_answers(
                model,
                self.processing_class,
                batch["question"],
                template=self.prompt_template,
                max_prompt_length=self.max_prompt_length,
                generation_config=self.answer_generation_config,
                synced_gpus=self.is_fsdp_enabled or is_deepspeed_zero3_enabled(),
            )
            answered += self.accelerator.gather_for_metrics(list(zip(batch["index"], answers)))
        model.train(was_training)

        answered.sort()
        if [i for i, _ in answered] != list(range(len(dataset))):
            raise RuntimeError(f"evaluation scored {len(answered)} answers for {len(dataset)} questions")
        predictions = [answer for _, answer in answered]
        scores, means = score_predictions(predictions, dataset["answers"])
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in means.items()}
        metrics[f"{metric_key_prefix}_samples"] = len(dataset)
        if self.predictions_file and self.is_world_process_zero():
            self._write_predictions(dataset, predictions, scores)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _write_predictions(self, dataset: datasets.Dataset, predictions: list[str], scores: list[dict]) -> None:
        path = Path(self.args.output_dir) / self.predictions_file
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for row, prediction, score in zip(dataset, predictions, scores):
                record = {"question": row["question"], "prediction": prediction, "answers": row["answers"], **score}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        logger.info("wrote %d predictions to %s", len(predictions), path)


def _as_columns(rows: list[dict]) -> dict[str, list]:
    return {"index": [r["index"] for r in rows], "question": [r["question"] for r in rows]}
