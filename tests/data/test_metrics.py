"""Metrics against values computed by hand, plain and through evaluate's API (offline)."""

import math

import evaluate
import pytest

from data.metrics import (
    ClassificationMetric,
    accuracy,
    exact_match,
    macro_f1,
    normalize_answer,
    perplexity_metrics,
    token_f1,
)


def test_accuracy_and_macro_f1_by_hand():
    predictions, references = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    # class 1: tp 2, predicted 3, actual 3 -> F1 = 4/6; class 0: tp 1, predicted 2, actual 2 -> F1 = 2/4
    assert accuracy(predictions, references) == pytest.approx(3 / 5)
    assert macro_f1(predictions, references) == pytest.approx((4 / 6 + 2 / 4) / 2)


def test_macro_f1_punishes_a_majority_class_guesser():
    # always 1 on 3x1, 1x0: class 1 F1 = 2*3/(4+3) = 6/7, class 0 F1 = 0 -> 3/7, while accuracy is 0.75
    assert macro_f1([1, 1, 1, 1], [1, 1, 1, 0]) == pytest.approx(3 / 7)


def test_squad_normalisation_drops_case_punctuation_articles_and_extra_spaces():
    assert normalize_answer("  The  Eiffel-Tower, in PARIS! ") == "eiffeltower in paris"
    assert normalize_answer("an apple a day") == "apple day"


def test_exact_match_takes_the_best_of_several_gold_answers():
    assert exact_match("the 1988", ["1989", "1988"]) == 1.0
    assert exact_match("1988 season", ["1988"]) == 0.0


def test_token_f1_by_hand():
    # prediction tokens [new, york, city], gold [new, york]: overlap 2, P = 2/3, R = 1 -> F1 = 0.8
    assert token_f1("New York City", ["new york"]) == pytest.approx(0.8)
    assert token_f1("New York City", ["boston", "new york"]) == pytest.approx(0.8)
    assert token_f1("the", ["a"]) == 1.0  # both normalise to nothing
    assert token_f1("paris", ["london"]) == 0.0


def test_evaluate_api_classification_offline():
    classification = ClassificationMetric()
    classification.add_batch(predictions=[1, 1], references=[1, 0])
    classification.add_batch(predictions=[0, 0, 1], references=[0, 1, 1])
    assert classification.compute() == pytest.approx({"accuracy": 3 / 5, "macro_f1": (4 / 6 + 2 / 4) / 2})


def test_evaluate_combine_works_with_project_metrics():
    combined = evaluate.combine([ClassificationMetric()])
    assert combined.compute(predictions=[0, 1], references=[0, 1])["accuracy"] == 1.0


def test_perplexity_and_bits_per_token():
    assert perplexity_metrics(math.log(8)) == pytest.approx({"perplexity": 8.0, "bits_per_token": 3.0})
    assert perplexity_metrics(1000.0)["perplexity"] == math.inf  # exp(1000) would overflow
