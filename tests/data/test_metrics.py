"""Metrics against values computed by hand, plain and through evaluate's API (offline)."""

import math

import evaluate
import numpy as np
import pytest
from scipy import stats

from data.metrics import (
    ClassificationMetric,
    accuracy,
    average_ranks,
    exact_match,
    macro_f1,
    multi_label_metrics,
    normalize_answer,
    perplexity_metrics,
    regression_metrics,
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


def test_multi_label_metrics_by_hand():
    predictions = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]])
    references = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]])
    # pooled: tp 3, predicted 5, actual 3 -> 6/8. Per class: 0: tp 2, 2, 2 -> 1; 1: tp 0, 1, 0 -> 0;
    # 2: tp 1, 2, 1 -> 2/3. Whole sets right: rows 2 and 4 of 4.
    scores = multi_label_metrics(predictions, references)
    assert scores == pytest.approx({"micro_f1": 6 / 8, "macro_f1": (1 + 0 + 2 / 3) / 3, "subset_accuracy": 2 / 4})


def test_multi_label_macro_f1_leaves_out_classes_never_predicted_nor_present():
    # class 2 never occurs on either side: averaging its undefined F1 in as 0 would give 2/3, not 1
    assert multi_label_metrics(np.array([[1, 0, 0], [0, 1, 0]]), np.array([[1, 0, 0], [0, 1, 0]]))["macro_f1"] == 1.0


def test_multi_label_metrics_refuse_arrays_of_different_shapes():
    with pytest.raises(ValueError, match="equal, non-empty"):
        multi_label_metrics(np.zeros((2, 3)), np.zeros((2, 2)))


def test_average_ranks_share_ties():
    assert average_ranks(np.array([10.0, 20.0, 20.0, 5.0])).tolist() == [2.0, 3.5, 3.5, 1.0]


@pytest.mark.parametrize("ties", [False, True])
def test_regression_metrics_match_scipy(ties):
    """scipy (a dev extra only) as the reference; with ties, Spearman's mean ranks matter (ranking ties by their
    order instead gives 0.6990 where scipy gives 0.7075 on these values)."""
    generator = np.random.default_rng(0)
    references = generator.normal(size=200)
    predictions = references + generator.normal(scale=0.8, size=200)
    if ties:
        references, predictions = np.round(references), np.round(predictions * 2) / 2
    scores = regression_metrics(predictions.astype(np.float32), references.astype(np.float32))
    expected_pearson = stats.pearsonr(predictions.astype(np.float32), references.astype(np.float32)).statistic
    expected_spearman = stats.spearmanr(predictions.astype(np.float32), references.astype(np.float32)).statistic
    assert scores["pearson"] == pytest.approx(expected_pearson, rel=1e-9)  # both in float64
    assert scores["spearman"] == pytest.approx(expected_spearman, rel=1e-9)
    expected_mse = np.mean((predictions.astype(np.float32).astype(np.float64) - references.astype(np.float32)) ** 2)
    assert scores["mse"] == pytest.approx(expected_mse, rel=1e-12)
    assert 0.3 < scores["spearman"] < 0.95  # a correlation to get right, neither none nor perfect


def test_correlations_of_a_constant_prediction_are_nan():
    scores = regression_metrics(np.ones(4), np.array([1.0, 2.0, 3.0, 4.0]))
    assert math.isnan(scores["pearson"]) and math.isnan(scores["spearman"]) and scores["mse"] == pytest.approx(3.5)
