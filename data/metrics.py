"""Offline metrics, usable plain or through `evaluate`'s API.

`evaluate.load("accuracy")` / `"squad"` fetch code from the Hub and fail with `HF_HUB_OFFLINE=1`, so
the metrics are written here: plain functions (the single implementation) and `evaluate.Metric`
subclasses wrapping them (`add_batch`, `compute`, `evaluate.combine` and distributed gathering work
as for Hub metrics).
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


def perplexity(mean_nll: float) -> float:
    """exp of a token-weighted mean negative log-likelihood in nats (inf rather than an overflow)."""
    return math.exp(mean_nll) if mean_nll < 700 else math.inf


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


class SquadAnswerMetric(evaluate.Metric):
    """Exact match and token F1 (fractions in [0, 1]) against a list of gold answers per question."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=self.__doc__,
            citation="Rajpurkar et al. 2016, SQuAD: 100,000+ Questions for Machine Comprehension of Text",
            inputs_description="predictions: list of str; references: list of lists of gold answer strings",
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions: list[str], references: list[list[str]]) -> dict[str, float]:
        _check_lengths(predictions, references)
        pairs = list(zip(predictions, references, strict=True))
        return {
            "exact_match": sum(exact_match(p, golds) for p, golds in pairs) / len(pairs),
            "f1": sum(token_f1(p, golds) for p, golds in pairs) / len(pairs),
        }


class PerplexityMetric(evaluate.Metric):
    """Perplexity and bits per token from per-token negative log-likelihoods (nats)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=self.__doc__,
            citation="",
            inputs_description="predictions: per-token negative log-likelihoods in nats",
            features=datasets.Features({"predictions": datasets.Value("float64")}),
        )

    def _compute(self, predictions: list[float]) -> dict[str, float]:
        if not predictions:
            raise ValueError("perplexity needs at least one token")
        mean_nll = sum(predictions) / len(predictions)
        return {
            "loss": mean_nll,
            "perplexity": perplexity(mean_nll),
            "bits_per_token": mean_nll / math.log(2),
        }
