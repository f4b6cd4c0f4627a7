"""Question/answer pairs for closed-book QA, normalised to NQ-open form `{"question", "answers": [...]}`.

Column mapping covers the common layouts: NQ-open (`question`, `answer`: list), TriviaQA (`question`,
`answer`: `{"value", "aliases", ...}`) and WebQuestions (`qText`, `answers`: list).
"""

import datasets

from .errors import DataError
from .loading import build_dataset_dict, require, split_sources

FEATURES = datasets.Features({"question": datasets.Value("string"), "answers": datasets.List(datasets.Value("string"))})


def load_qa_dataset(
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_file: str | list[str] | None = None,
    validation_file: str | list[str] | None = None,
    test_file: str | list[str] | None = None,
    question_column: str = "question",
    answer_column: str = "answer",
    encoding: str = "utf-8",
) -> datasets.DatasetDict:
    """Loads `train` / `validation` / `test` (those given) with columns `question` (str) and `answers`
    (non-empty list of str).

    Raises `DataError` naming the file and line for a missing column, an empty question or an answer
    that is neither a string, a list of strings, nor a TriviaQA answer dict. The `test` split may come
    without answers (questions to answer): if none of its rows has one, the split has no `answers` column;
    a test file with some answers missing fails, naming the first row without one. The splits are Arrow files
    of the cache, read again only when a file or an option changes (`data.loading.build_dataset_dict`).
    """
    sources = split_sources(
        dataset_name=dataset_name,
        dataset_config_name=dataset_config_name,
        data_files={"train": train_file, "validation": validation_file, "test": test_file},
        encoding=encoding,
    )

    def convert(location: str, record: dict) -> dict:
        question = str(require(record, question_column, location)).strip()
        answers = gold_answers(require(record, answer_column, location), location)
        return {"question": question, "answers": answers}

    def convert_test(location: str, record: dict) -> dict:
        question = str(require(record, question_column, location)).strip()
        value = record.get(answer_column)
        return {"question": question, "answers": gold_answers(value, location) if value else None}

    return build_dataset_dict(
        sources,
        convert,
        splits=("train", "validation"),
        features=FEATURES,
        settings={"question_column": question_column, "answer_column": answer_column},
        test_convert=convert_test,
    )


def gold_answers(value: object, location: str) -> list[str]:
    """All acceptable answers in `value`: a string, a list of strings, or a TriviaQA dict."""
    if isinstance(value, dict):  # TriviaQA: the canonical value first, then its aliases
        value = [value.get("value"), *(value.get("aliases") or [])]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        kind = type(value).__name__
        raise DataError(f"{location}: answer must be a string or a list of strings, got {kind}")
    answers = list(dict.fromkeys(a.strip() for a in value if isinstance(a, str) and a.strip()))
    if not answers:
        raise DataError(f"{location}: no non-empty answer string in {value!r}")
    return answers
