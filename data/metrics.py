"""Offline metrics: accuracy and macro F1, SQuAD exact match and token F1, perplexity.

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
    if len(predictions) != len(references) or not references:
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
