"""The sentiment recipe beyond one sentence and one label: text pairs (`text_pair_column`), `problem_type`
multi-label and regression, and MNLI's matched / mismatched validation splits from the Hub (a stand-in
`load_dataset`). Each problem type trains a tiny model 3 steps through `main` on rows written here, evaluates,
predicts and saves; the saved folder answers through `pipeline("text-classification")` in a clean process with the
recipe's own predictions, and its `eval_loss` is the mean over examples at any evaluation batch size."""

import json
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from data.sentiment import load_sentiment_dataset
from recipes.kit.command_line import parse_config
from recipes.kit.data_steps import select_splits
from recipes.kit.errors import ConfigError
from recipes.sentiment.problem_types import check_best_metric, prediction_rows, prediction_scores
from recipes.sentiment.train import CONFIG_CLASSES, SentimentModelArguments, main
from tests.data.test_text_classification_data import glue_stand_in
from tests.recipes.test_sentiment import TINY_YAML

WORDS = "red green blue cat dog bird runs sleeps sings fast slow loud".split()
NLI = ["entailment", "neutral", "contradiction"]
TOPICS = ["sports", "politics", "science"]
ROWS = 29  # neither 7 nor 2 divides it: the last evaluation batch is short


def sentence(seed: int, length: int) -> str:
    return " ".join(WORDS[(seed * 7 + k * 5) % len(WORDS)] for k in range(length))


def write_rows(folder: Path, problem: str) -> Path:
    """`ROWS` made-up rows of `problem` in the layout its flags (`FLAGS`) read."""
    texts = [(sentence(i, 3 + i % 4), sentence(i + 5, 2 + i % 3)) for i in range(ROWS)]
    if problem == "pairs":  # MNLI's columns, label names
        path = folder / "pairs.tsv"
        lines = ["premise\thypothesis\tlabel", *(f"{a}\t{b}\t{NLI[i % 3]}" for i, (a, b) in enumerate(texts))]
        path.write_text("\n".join(lines) + "\n")
    elif problem == "multi_label":  # sets as JSON lists of names or ids: sports in 4/5, politics in 1/2, science in
        path = folder / "multi_label.jsonl"  # 1/7 of the rows, so that 3 steps already choose some labels, not all
        present = [(i % 5 != 0, i % 2 == 1, i % 7 == 0) for i in range(ROWS)]
        sets = [[TOPICS[k] if i % 3 else k for k in range(3) if present[i][k]] for i in range(ROWS)]
        path.write_text("".join(json.dumps({"sentence": a, "label": s}) + "\n" for (a, _), s in zip(texts, sets)))
    else:  # STS-B's columns, scores in [0, 5]
        path = folder / "regression.csv"
        lines = ["sentence1,sentence2,label", *(f"{a},{b},{(i % 11) / 2}" for i, (a, b) in enumerate(texts))]
        path.write_text("\n".join(lines) + "\n")
    return path


#: Each problem type's flags on tiny.yaml, with the metric that selects its checkpoint (evaluated every 3 steps).
FLAGS = {
    "pairs": ["--text_column", "premise", "--text_pair_column", "hypothesis", "--class_names", *NLI],
    "multi_label": ["--problem_type", "multi_label_classification", "--class_names", *TOPICS],
    "regression": ["--problem_type", "regression", "--text_column", "sentence1", "--text_pair_column", "sentence2"],
}
BEST_METRIC = {
    "pairs": ["--metric_for_best_model", "accuracy"],
    "multi_label": ["--metric_for_best_model", "micro_f1"],
    "regression": ["--metric_for_best_model", "mse", "--greater_is_better", "false"],
}
CARD_METRIC = {"pairs": "eval_accuracy", "multi_label": "eval_subset_accuracy", "regression": "eval_spearman"}
# 3 steps, evaluated and saved at the third: the checkpoint that load_best_model_at_end (tiny.yaml) selects
STEPS = "--max_steps 3 --eval_strategy steps --eval_steps 3 --save_strategy steps --save_steps 3".split()


def run(output_dir: Path, *flags: str) -> dict[str, float]:
    return main(*parse_config(*CONFIG_CLASSES, argv=[str(TINY_YAML), "--output_dir", str(output_dir), *flags]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, tuple[Path, Path, dict[str, float]]]:
    """`{problem: (data file, output folder, metrics)}`: 3 steps of training, evaluation and prediction (on the
    training rows) through `main`, one thread."""
    folder, runs = tmp_path_factory.mktemp("text-classification"), {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for problem in FLAGS:
            path = write_rows(folder, problem)
            files = ["--train_file", str(path), "--validation_file", str(path), "--test_file", str(path)]
            flags = [
                *files,
                *FLAGS[problem],
                *BEST_METRIC[problem],
                *STEPS,
                "--do_predict",
                "true",
            ]
            runs[problem] = (path, folder / problem, run(folder / problem, *flags))
    finally:
        torch.set_num_threads(threads)
    return runs


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("problem", sorted(FLAGS))
def test_each_problem_type_trains_evaluates_predicts_and_saves_its_problem_type(trained, problem):
    _, output_dir, metrics = trained[problem]
    config = json.loads((output_dir / "config.json").read_text())
    expected = {
        "pairs": ("single_label_classification", dict(enumerate(NLI))),
        "multi_label": ("multi_label_classification", dict(enumerate(TOPICS))),
        "regression": ("regression", {0: "score"}),
    }[problem]
    assert (config["problem_type"], config["id2label"]) == (expected[0], {str(k): v for k, v in expected[1].items()})
    assert metrics[CARD_METRIC[problem]] == metrics[CARD_METRIC[problem].replace("eval_", "predict_")]  # same rows
    assert f"| {CARD_METRIC[problem]} |" in (output_dir / "README.md").read_text()  # the card's metrics
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["best_metric"] is not None and state["best_model_checkpoint"]  # chosen by its metric
    rows = read_jsonl(output_dir / "predictions.jsonl")
    assert len(rows) == ROWS and all(("text_pair" in row) == (problem != "multi_label") for row in rows)


_PIPELINE_SCRIPT = """
import json, sys
from transformers import pipeline
folder, inputs_file, out_file = sys.argv[1:]
classify = pipeline("text-classification", model=folder, trust_remote_code=True)
assert type(classify.model).__module__.startswith("transformers_modules"), type(classify.model).__module__
with open(out_file, "w") as f:
    json.dump(classify(json.load(open(inputs_file)), top_k=None), f)
"""


@pytest.mark.slow
@pytest.mark.parametrize("problem", sorted(FLAGS))
def test_the_saved_folder_answers_through_pipeline_in_a_clean_process_as_the_recipe_predicted(
    trained, problem, clean_process, tmp_path
):
    _, output_dir, _ = trained[problem]
    rows = read_jsonl(output_dir / "predictions.jsonl")
    inputs = [
        {"text": row["text"], "text_pair": row["text_pair"]} if "text_pair" in row else row["text"] for row in rows
    ]
    (tmp_path / "inputs.json").write_text(json.dumps(inputs))
    clean_process(
        _PIPELINE_SCRIPT, str(output_dir), str(tmp_path / "inputs.json"), str(tmp_path / "out.json"), cwd=tmp_path
    )
    answers = json.loads((tmp_path / "out.json").read_text())  # per input: every label, best first
    # 6 decimals in predictions.jsonl; batches padded there, one input at a time here: float32 sums in another
    # order (~1e-7)
    tolerance = 2e-6
    for row, answer in zip(rows, answers, strict=True):
        if problem == "regression":  # the raw score: no sigmoid (which would put it in (0, 1) and move it)
            assert [a["label"] for a in answer] == ["score"]
            assert answer[0]["score"] == pytest.approx(row["score"], abs=tolerance)
        elif problem == "multi_label":  # a sigmoid per label; those at 0.5 or more are the recipe's
            chosen = {a["label"]: a["score"] for a in answer if a["score"] >= 0.5}
            assert list(chosen) == list(row["labels"])
            assert list(chosen.values()) == pytest.approx(list(row["labels"].values()), abs=tolerance)
        else:  # softmax over the three classes
            assert answer[0]["label"] == row["label"]
            assert answer[0]["score"] == pytest.approx(row["probability"], abs=tolerance)
            assert sum(a["score"] for a in answer) == pytest.approx(1.0, abs=1e-5)
    if problem == "multi_label":  # some labels chosen and some not, or the threshold's comparison is idle
        assert any(row["labels"] for row in rows) and any(len(row["labels"]) < len(TOPICS) for row in rows)


def labelled_rows(path: Path, problem: str) -> datasets.Dataset:
    columns = {"multi_label": {}, "pairs": {"text_column": "premise", "text_pair_column": "hypothesis"}}.get(
        problem, {"text_column": "sentence1", "text_pair_column": "sentence2"}
    )
    problem_type = {"multi_label": "multi_label_classification", "regression": "regression"}
    kind = problem_type.get(problem, "single_label_classification")
    names = {"pairs": NLI, "multi_label": TOPICS}.get(problem, ["negative", "positive"])
    return load_sentiment_dataset(train_file=str(path), label_names=names, problem_type=kind, **columns)["train"]


def losses_one_at_a_time(folder: Path, rows: datasets.Dataset) -> list[float]:
    """The model's loss on each row alone: no padding, no batch."""
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    losses = []
    with torch.no_grad():
        for row in rows:
            inputs = tokenizer(row["text"], row.get("text_pair"), truncation=True, max_length=64, return_tensors="pt")
            losses.append(model(**inputs, labels=torch.tensor([row["label"]])).loss.item())
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("problem", sorted(FLAGS))
def test_eval_loss_is_the_mean_over_examples_at_any_batch_size(trained, problem, tmp_path):
    path, output_dir, _ = trained[problem]
    losses = losses_one_at_a_time(output_dir, labelled_rows(path, problem))
    assert max(losses) - min(losses) > 1e-3  # examples differ: a wrong weighting would show
    for batch_size in (1, 7):
        metrics = run(
            tmp_path / f"eval-{batch_size}",
            *["--do_train", "false", "--train_file", "", "--config_overrides", "", "--validation_file", str(path)],
            *["--model_name_or_path", str(output_dir), "--per_device_eval_batch_size", str(batch_size)],
            *FLAGS[problem],
        )
        # float32 forward passes of padded batches against unpadded ones: ~1e-7 relative (test_evaluation_layout)
        assert metrics["eval_loss"] == pytest.approx(sum(losses) / len(losses), abs=1e-6), batch_size


MNLI_FLAGS = [
    *["--dataset_name", "nyu-mll/glue", "--dataset_config_name", "mnli", "--train_file", "", "--validation_file", ""],
    *["--text_column", "premise", "--text_pair_column", "hypothesis", "--class_names", *NLI],
]


@pytest.fixture
def mnli_hub(monkeypatch):
    """`datasets.load_dataset` giving the stand-in of nyu-mll/glue's mnli (tests/data/test_text_classification_data)."""
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, **kwargs: glue_stand_in(config))


@pytest.mark.slow
def test_mnli_from_the_hub_evaluates_matched_and_mismatched_each_under_its_prefix(mnli_hub, tmp_path):
    output_dir = tmp_path / "mnli"
    metrics = run(output_dir, *MNLI_FLAGS, *STEPS, "--metric_for_best_model", "matched_accuracy")
    for prefix in ("eval_matched", "eval_mismatched"):
        assert {f"{prefix}_loss", f"{prefix}_accuracy", f"{prefix}_macro_f1"} <= metrics.keys(), sorted(metrics)
        assert (output_dir / f"{prefix}_results.json").is_file()
    assert not any(name.startswith("eval_loss") or name == "eval_accuracy" for name in metrics)
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert "eval_mismatched_accuracy" in state["log_history"][-2]  # evaluated during training too, both splits


def test_mnli_refuses_a_best_metric_that_its_named_splits_do_not_report(mnli_hub, tmp_path):
    with pytest.raises(ConfigError, match=r"metric_for_best_model 'accuracy' .* 'matched_accuracy'"):
        run(tmp_path / "mnli", *MNLI_FLAGS, *STEPS, "--metric_for_best_model", "accuracy")


def test_both_validation_splits_are_kept_and_each_cut_to_max_eval_samples():
    splits = {name: datasets.Dataset.from_dict({"x": list(range(5))}) for name in ("train", *glue_stand_in("mnli"))}
    modes = SimpleNamespace(do_train=False, do_eval=True, do_predict=False)
    used = select_splits(splits, modes, max_samples={"validation": 3})
    assert {name: len(rows) for name, rows in used.items()} == {"validation_matched": 3, "validation_mismatched": 3}
    with pytest.raises(ConfigError, match="no validation split"):
        select_splits({"train": splits["train"]}, modes, max_samples={})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--problem_type", "ordinal"], "problem_type must be one of"),
        (["--problem_type", "regression", "--class_names", "low", "high"], "class_names .* no classes"),
        (["--text_pair_column", "sentence"], "text_pair_column must name a column other than text_column"),
        (["--label_separator", ""], "label_separator must not be empty"),
        (["--problem_type", "regression"], "metric_for_best_model 'accuracy' is not reported .* 'pearson'"),
    ],
)
def test_problem_type_settings_that_cannot_work_fail_naming_the_field(tmp_path, flags, message):
    with pytest.raises(ConfigError, match=message):
        run(tmp_path / "out", *flags)


@pytest.mark.parametrize(
    ("problem_type", "fields"),
    [
        ("multi_label_classification", {"num_labels": 3, "id2label": dict(enumerate(TOPICS))}),
        ("regression", {"num_labels": 1, "id2label": {0: "score"}}),
    ],
)
def test_the_problem_type_is_set_on_the_model_config(problem_type, fields):
    names = TOPICS if problem_type != "regression" else ["negative", "positive"]
    config_fields = SentimentModelArguments(problem_type=problem_type, class_names=names).recipe_config_fields()
    assert config_fields["problem_type"] == problem_type
    assert {name: config_fields[name] for name in fields} == fields


def test_mse_selects_checkpoints_only_with_lower_is_better():
    training = SimpleNamespace(
        do_train=True, eval_strategy="steps", metric_for_best_model="mse", greater_is_better=True
    )
    with pytest.raises(ConfigError, match="lower is better"):
        check_best_metric(training, "regression", ["eval"])
    check_best_metric(SimpleNamespace(**{**vars(training), "greater_is_better": False}), "regression", ["eval"])


def test_predictions_and_scores_of_each_problem_type_by_hand():
    logits = np.array([[2.0, -1.0, 0.5], [-3.0, -0.2, 0.1]], dtype=np.float32)
    config = SimpleNamespace(problem_type="multi_label_classification", id2label=dict(enumerate(TOPICS)))
    sigmoid = 1 / (1 + np.exp(-logits.astype(np.float64)))
    assert prediction_rows(logits, config) == [
        {"labels": {"sports": round(sigmoid[0, 0], 6), "science": round(sigmoid[0, 2], 6)}},  # most probable first
        {"labels": {"science": round(sigmoid[1, 2], 6)}},
    ]
    scores = prediction_scores("multi_label_classification", logits, np.array([[1, 0, 1], [0, 1, 1]]), None)
    assert scores["subset_accuracy"] == 0.5 and scores["micro_f1"] == pytest.approx(2 * 3 / (3 + 4))
    config = SimpleNamespace(problem_type="regression", id2label={0: "score"})
    assert prediction_rows(logits[:, :1], config) == [{"score": 2.0}, {"score": -3.0}]  # raw: no sigmoid
