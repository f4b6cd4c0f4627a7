"""Raw text for language modelling: one record per line, from the Hub (WikiText) or local txt files."""

import datasets

from .errors import DataError
from .loading import build_dataset_dict, split_records


def load_text_corpus(
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    text_column: str = "text",
) -> datasets.DatasetDict:
    """Loads `train` / `validation` / `test` (those present) with one column `text`, one line per row, in
    corpus order.

    Empty lines are kept (they are paragraph breaks in WikiText); order matters because language
    models trained on ordered streams (Transformer-XL) read the corpus as one sequence.
    """
    records = split_records(
        dataset_name=dataset_name,
        dataset_config_name=dataset_config_name,
        data_files={"train": train_file, "validation": validation_file, "test": test_file},
    )

    def convert(location: str, record: dict) -> dict:
        if text_column not in record:
            raise DataError(f"{location}: missing column {text_column!r} (found {sorted(record)})")
        return {"text": str(record[text_column] or "")}

    return build_dataset_dict(records, convert, splits=("train", "validation", "test"))
