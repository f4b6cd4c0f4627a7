"""The validation split carved from the training data (`data.splits`): sizes, disjointness, reproducibility."""

import os
import subprocess
import sys

import datasets
import pytest
import torch

from data.errors import DataError
from data.splits import carve_validation_rows, carve_validation_tokens


def numbered_rows(count: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"row": list(range(count))})


@pytest.mark.parametrize(("rows", "train_rows", "validation_rows"), [(1000, 900, 100), (1005, 905, 100), (10, 9, 1)])
def test_ten_percent_of_the_rows_become_a_disjoint_validation_split(rows, train_rows, validation_rows):
    # floor(rows * 10 / 100) validation rows: 100 of 1,000, 100 of 1,005 (100.5 rounded down), 1 of 10.
    train, validation = (
        list(split["row"]) for split in carve_validation_rows(numbered_rows(rows), percentage=10, seed=42)
    )
    assert (len(train), len(validation)) == (train_rows, validation_rows)
    assert set(train).isdisjoint(validation)
    assert sorted(train + validation) == list(range(rows))
    assert train == sorted(train) and validation == sorted(validation)  # file order


def test_the_split_depends_on_the_seed_only():
    first, again, other_seed = (
        list(carve_validation_rows(numbered_rows(1000), percentage=10, seed=seed)[1]["row"]) for seed in (42, 42, 43)
    )
    assert first == again and first != other_seed
    assert first != list(range(100)) and first != list(range(900, 1000))  # drawn, not a slice


@pytest.mark.slow
def test_another_process_carves_the_same_split():
    # What every rank of a multi-process run does: a fresh interpreter (another hash seed) computes the split.
    script = (
        "import datasets; from data.splits import carve_validation_rows; "
        "rows = datasets.Dataset.from_dict({'row': list(range(1000))}); "
        "print(list(carve_validation_rows(rows, percentage=10, seed=42)[1]['row']))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "7"}
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env).stdout
    assert output.strip() == str(list(carve_validation_rows(numbered_rows(1000), percentage=10, seed=42)[1]["row"]))


def test_too_few_rows_for_the_percentage_fail_naming_the_flag():
    with pytest.raises(DataError, match="validation_split_percentage 10: 10% of 9 training rows is none"):
        carve_validation_rows(numbered_rows(9), percentage=10, seed=0)


def test_the_last_ten_percent_of_a_token_stream_is_the_validation_stream():
    stream = torch.arange(1005, dtype=torch.int32)
    train, validation = carve_validation_tokens(stream, percentage=10)
    assert torch.equal(train, torch.arange(905, dtype=torch.int32))  # floor(1005 / 10) = 100 tokens held out
    assert torch.equal(validation, torch.arange(905, 1005, dtype=torch.int32))
    assert train.data_ptr() == stream.data_ptr()  # views of the (memory-mapped) stream, not copies
