"""Offline metrics: accuracy and macro F1; multi-label micro / macro F1 and subset accuracy; Pearson, Spearman and
MSE for regression; SQuAD exact match and token F1; perplexity.

`evaluate.load("accuracy")` / `"squad"` fetch code from the Hub and fail with `HF_HUB_OFFLINE=1`, so
the metrics are written here as plain functions; `ClassificationMetric` wraps accuracy and macro F1 in
an `evaluate.Metric` (`add_batch`, `compute`, `evaluate.combine` and distributed gathering work as for
Hub metrics), as the sentiment recipe uses them.
"""

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

import datasets
import evaluate
import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Fraction of predictions equal to their reference."""
    _check_lengths(predictions, references)
    return sum(int(p == r) for p, r in zip(predictions, references, strict=True)) / len(references)


def macro_f1(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Unweighted mean of per-class F1 over every class seen in predictions or references.

    A class that is predicted but never correct (or present but never predicted) scores 0, so a model
    that always answers the majority class gets no more than 1 / (number of classes).
    """
    _check_lengths(predictions, references)
    scores = []
    for label in sorted(set(predictions) | set(references)):
        true_pos = sum(p == label and r == label for p, r in zip(predictions, references, strict=True))
        predicted, actual = sum(p == label for p in predictions), sum(r == label for r in references)
        scores.append(2 * true_pos / (predicted + actual))
    return sum(scores) / len(scores)


def multi_label_metrics(predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """Scores of multi-hot `predictions` against multi-hot `references`, both [examples, classes] of 0 / 1:
    `micro_f1` (F1 of all (example, class) decisions pooled), `macro_f1` (the mean of per-class F1 over every class
    predicted or present at least once, as `macro_f1` does for single labels) and `subset_accuracy` (the fraction of
    examples whose whole label set is right). The F1s are 0 when no class is predicted or present (scikit-learn's
    default)."""
    predicted, actual = np.asarray(predictions).astype(bool), np.asarray(references).astype(bool)
    if predicted.shape != actual.shape or predicted.ndim != 2 or not len(actual):
        raise ValueError(f"need equal, non-empty [examples, classes] arrays, got {predicted.shape} and {actual.shape}")
    true_pos, predicted_count, actual_count = (predicted & actual).sum(0), predicted.sum(0), actual.sum(0)
    seen = (predicted_count + actual_count) > 0
    per_class = 2 * true_pos[seen] / (predicted_count[seen] + actual_count[seen])
    pooled = predicted_count.sum() + actual_count.sum()
    return {
        "micro_f1": float(2 * true_pos.sum() / pooled) if pooled else 0.0,
        "macro_f1": float(per_class.mean()) if per_class.size else 0.0,
        "subset_accuracy": float((predicted == actual).all(axis=1).mean()),
    }


def regression_metrics(predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """`pearson` and `spearman` correlation (NaN when either side is constant: no correlation is defined) and `mse`
    (mean squared error) of `predictions` against `references`, computed in float64."""
    predicted, actual = np.asarray(predictions, np.float64).ravel(), np.asarray(references, np.float64).ravel()
    _check_lengths(predicted, actual)
    return {
        "pearson": pearson(predicted, actual),
        "spearman": pearson(average_ranks(predicted), average_ranks(actual)),
        "mse": float(np.mean((predicted - actual) ** 2)),
    }


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's correlation coefficient of two equally long vectors; NaN when either is constant."""
    x, y = x - x.mean(), y - y.mean()
    scale = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / scale if scale > 0 else math.nan


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, ties sharing the mean of their ranks (Spearman's correlation is Pearson's of
    these): `[10, 20, 20, 5]` -> `[2, 3.5, 3.5, 1]`."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])  # first index of each tie group
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)  # mean of the 1-based ranks start+1..end
    return ranks


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation, drop the articles a/an/the, fold whitespace."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())


def exact_match(prediction: str, gold_answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0."""
    normalized = normalize_answer(prediction)
    return float(any(normalized == normalize_answer(gold) for gold in gold_answers))


def token_f1(prediction: str, gold_answers: Sequence[str]) -> float:
    """Best token-overlap F1 between the normalised prediction and any normalised gold answer."""
    return max(_pair_f1(normalize_answer(prediction).split(), normalize_answer(g).split()) for g in gold_answers)


def perplexity_metrics(mean_nll: float) -> dict[str, float]:
    """`perplexity` (exp of a token-weighted mean negative log-likelihood in nats; inf rather than an
    overflow) and `bits_per_token` (the same mean in bits), as the language-model recipes log them."""
    return {"perplexity": math.exp(mean_nll) if mean_nll < 700 else math.inf, "bits_per_token": mean_nll / math.log(2)}


def _pair_f1(prediction_tokens: list[str], gold_tokens: list[str]) -> float:
    if not prediction_tokens or not gold_tokens:  # SQuAD: both empty is a match, one empty is not
        return float(prediction_tokens == gold_tokens)
    overlap = sum((Counter(prediction_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(prediction_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _check_lengths(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references) or not len(references):
        raise ValueError(
            f"need equal, non-zero numbers of predictions and references, got {len(predictions)} and {len(references)}"
        )


class ClassificationMetric(evaluate.Metric):
    """Accuracy and macro F1 over integer class ids."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=self.__doc__,
            citation="",
            inputs_description="predictions, references: lists of integer class ids",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions: list[int], references: list[int]) -> dict[str, float]:
        return {"accuracy": accuracy(predictions, references), "macro_f1": macro_f1(predictions, references)}
