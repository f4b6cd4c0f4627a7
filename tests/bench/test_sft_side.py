"""`bench/_sft_side.py`'s batch counts, on which `bench/closed_book_qa.py --parts trl` compares sides fairly: a
padding-free (packed) batch counts its examples by the restarts of `position_ids`, not its one row, and the same
rows give the same answer tokens padded or packed."""

import importlib.util

import torch

from data.labels import IGNORE_INDEX
from data.qa_features import PaddingFreeCollator, QATrainingCollator
from tests.conftest import REPO


def load_sft_side():
    spec = importlib.util.spec_from_file_location("bench_sft_side", REPO / "bench" / "_sft_side.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FixedLoss:
    """A trainer's `compute_loss` stand-in: the loss is the number of rows of the batch."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return torch.tensor(float(inputs["input_ids"].shape[0]))


def counted(batch: dict) -> dict:
    sft_side = load_sft_side()
    trainer = type("Counted", (sft_side.BatchCounts, FixedLoss), {})()
    trainer.batch_counts = []
    loss = trainer.compute_loss(None, batch)
    assert loss.item() == batch["input_ids"].shape[0]  # the wrapped trainer's loss comes back unchanged
    return trainer.batch_counts[0]


def test_packed_and_padded_batches_count_the_same_examples_and_answer_tokens():
    # Three rows: prompt ids (label -100) then answer ids; the answers are 2, 1 and 3 tokens long.
    rows = [
        {"input_ids": [5, 6, 7, 8, 9], "labels": [IGNORE_INDEX] * 3 + [8, 9]},
        {"input_ids": [5, 6, 10], "labels": [IGNORE_INDEX] * 2 + [10]},
        {"input_ids": [5, 11, 12, 13], "labels": [IGNORE_INDEX] + [11, 12, 13]},
    ]
    padded, packed = counted(QATrainingCollator(0)(rows)), counted(PaddingFreeCollator()(rows))
    assert padded["examples"] == packed["examples"] == 3
    assert padded["answer_tokens"] == packed["answer_tokens"] == 6
    assert (padded["loss"], packed["loss"]) == (3.0, 1.0)  # the rows the loss saw: 3 padded, 1 packed
