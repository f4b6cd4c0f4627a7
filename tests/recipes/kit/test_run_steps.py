"""`recipes.kit.run_steps`: the steps every recipe's `main` takes."""

import logging

import datasets
import transformers
from transformers import TrainingArguments

from recipes.kit.run_steps import setup_logging


class Collect(logging.Handler):
    """Keeps the records the root logger hands it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_library_lines_reach_their_own_handler_only_even_where_ci_makes_transformers_propagate(tmp_path):
    """With CI=true transformers hands its records to the root logger too, whose handler the recipe sets up: every
    line twice. Stood in for by enabling propagation, as transformers does under CI=true."""
    root = Collect()
    logging.getLogger().addHandler(root)
    try:
        transformers.utils.logging.enable_propagation()
        datasets.utils.logging.enable_propagation()
        setup_logging(TrainingArguments(output_dir=str(tmp_path), log_level="info", use_cpu=True, report_to="none"))
        transformers.utils.logging.get_logger("transformers.trainer").info("a line of the Trainer")
        datasets.utils.logging.get_logger("datasets.builder").info("a line of datasets")
    finally:
        logging.getLogger().removeHandler(root)
        for library in (transformers, datasets):
            library.utils.logging.set_verbosity_warning()
    names = [record.name for record in root.records]
    assert "recipes.kit.run_steps" in names  # the recipe's own lines do reach the root handler
    assert not [name for name in names if name.startswith(("transformers", "datasets"))], names
