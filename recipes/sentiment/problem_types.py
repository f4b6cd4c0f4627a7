"""What the recipe does differently for each problem type (`problem_type`, set on the model config, which the MLP
head's loss and `pipeline("text-classification")` both follow): the labels the data are read with, the metrics,
the rows of `predictions.jsonl`, and which `metric_for_best_model` can select a checkpoint.

- `single_label_classification`: one of `class_names` (softmax); accuracy and macro F1; the top label and its
  probability.
- `multi_label_classification`: any set of `class_names`, each chosen when its sigmoid is >= `THRESHOLD`; micro and
  macro F1 and subset accuracy (the whole set right); the chosen labels with their probabilities.
- `regression`: one raw score (`num_labels` 1, named `SCORE_NAME`); Pearson, Spearman and mean squared error; the
  score.
"""

import numpy as np
import torch
from transformers import PretrainedConfig, TrainingArguments

from data.class_labels import PROBLEM_TYPES
from data.metrics import ClassificationMetric, multi_label_metrics, regression_metrics
from recipes.kit.errors import ConfigError

SINGLE_LABEL, MULTI_LABEL, REGRESSION = PROBLEM_TYPES
#: The metrics of each problem type, besides `loss` (the mean per-example loss).
METRICS = {
    SINGLE_LABEL: ("accuracy", "macro_f1"),
    MULTI_LABEL: ("micro_f1", "macro_f1", "subset_accuracy"),
    REGRESSION: ("pearson", "spearman", "mse"),
}
#: The sigmoid probability from which a multi-label classifier gives a label.
THRESHOLD = 0.5
#: The label name (`id2label`) of a regression model's one output, which `pipeline` reports.
SCORE_NAME = "score"


def problem_type_of(config: PretrainedConfig) -> str:
    """The problem type of a classifier's config; a folder saved before the recipe set one is single-label."""
    return config.problem_type or SINGLE_LABEL


def label_arguments(
    problem_type: str, class_names: list[str], trained_config: PretrainedConfig | None
) -> dict[str, object]:
    """The data loader's `problem_type` and `label_names`: a trained model's own (evaluate / predict only, from its
    config), else the run's `problem_type` and `class_names`."""
    if trained_config is None:
        return {"problem_type": problem_type, "label_names": class_names}
    names = [trained_config.id2label[i] for i in range(len(trained_config.id2label))]
    return {"problem_type": problem_type_of(trained_config), "label_names": names}


def check_best_metric(training_args: TrainingArguments, problem_type: str, eval_prefixes: list[str]) -> None:
    """Fails before training, naming `metric_for_best_model`, when the metric that selects checkpoints is not one
    the evaluations report (the loss or a metric of `problem_type`, after each split's prefix without its `eval_`:
    `accuracy`; MNLI's `matched_accuracy`), or is the MSE with `greater_is_better` true. Trainer would fail at the
    first evaluation (its default `loss` included, when the splits are named), or keep the worst checkpoint. Only
    checked where it is used: training with evaluations (`eval_strategy` other than no)."""
    chosen = training_args.metric_for_best_model
    if not training_args.do_train or training_args.eval_strategy == "no" or chosen is None:
        return  # no evaluation during training: no checkpoint is selected by a metric
    names = [
        f"{prefix}_{metric}".removeprefix("eval_")
        for prefix in eval_prefixes
        for metric in ("loss", *METRICS[problem_type])
    ]
    if chosen.removeprefix("eval_") not in names:
        raise ConfigError(
            f"metric_for_best_model {chosen!r} is not reported by this run ({problem_type}): one of {names}"
        )
    if chosen.endswith("mse") and training_args.greater_is_better:
        raise ConfigError(f"metric_for_best_model {chosen!r}: lower is better; set greater_is_better false")


def prediction_scores(
    problem_type: str, logits: np.ndarray, labels: np.ndarray, metric: ClassificationMetric
) -> dict[str, float]:
    """The metrics of `problem_type` (`METRICS`) of the logits [examples, num_labels] against the labels (class ids,
    multi-hot vectors or scores); `metric` scores single labels."""
    if problem_type == REGRESSION:
        return regression_metrics(logits[:, 0], labels)
    if problem_type == MULTI_LABEL:
        return multi_label_metrics(_sigmoid(logits) >= THRESHOLD, labels)
    return metric.compute(predictions=np.argmax(logits, axis=-1), references=labels)


def prediction_rows(logits: np.ndarray, config: PretrainedConfig) -> list[dict[str, object]]:
    """A row of `predictions.jsonl` per example, from its logits: `{"label", "probability"}` (single-label),
    `{"labels": {name: probability}}` for the labels chosen, most probable first (multi-label), or `{"score"}`
    (regression); numbers rounded to 6 decimals."""
    problem_type, id2label = problem_type_of(config), config.id2label
    if problem_type == REGRESSION:
        return [{"score": round(score, 6)} for score in logits[:, 0].astype(float).tolist()]
    if problem_type == MULTI_LABEL:
        rows = []
        for probabilities in _sigmoid(logits).tolist():
            chosen = sorted((p, i) for i, p in enumerate(probabilities) if p >= THRESHOLD)
            rows.append({"labels": {id2label[i]: round(p, 6) for p, i in reversed(chosen)}})
        return rows
    best, label_ids = torch.from_numpy(logits).float().softmax(dim=-1).max(dim=-1)
    return [{"label": id2label[i], "probability": round(p, 6)} for i, p in zip(label_ids.tolist(), best.tolist())]


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """The sigmoid of float32 logits, in float32 as torch computes it."""
    return torch.from_numpy(logits).float().sigmoid().numpy()
