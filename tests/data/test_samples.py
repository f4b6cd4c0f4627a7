"""The shipped sample data is exactly what the generator writes, and the synthetic corpus does its job."""

import pytest

from data.samples import SAMPLES_DIR
from data.samples.make_samples import write_samples
from data.synthetic import END_MARKER, KEY_MARKER, RECALL_MARKER, long_range_documents


def test_committed_samples_equal_the_generator_output(tmp_path):
    for path in write_samples(tmp_path):
        committed = SAMPLES_DIR / path.relative_to(tmp_path)
        assert committed.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), committed


def test_long_range_documents_repeat_the_key_after_the_filler():
    documents = long_range_documents(num_documents=50, num_keys=4, filler_length=30, seed=3)
    for document in documents:
        tokens = document.split()
        assert tokens[0] == KEY_MARKER and tokens[-3] == RECALL_MARKER and tokens[-1] == END_MARKER
        assert tokens[1] == tokens[-2]  # the recalled key is the first key ...
        assert len(tokens) - 2 - 1 == 30 + 2  # ... seen filler_length + 2 tokens earlier
    assert len({d.split()[1] for d in documents}) == 4


def test_long_range_documents_are_deterministic_given_the_seed():
    assert long_range_documents(num_documents=5, seed=1) == long_range_documents(num_documents=5, seed=1)
    assert long_range_documents(num_documents=20, seed=1) != long_range_documents(num_documents=20, seed=2)


def test_long_range_documents_reject_degenerate_settings():
    with pytest.raises(ValueError, match="num_keys >= 2"):
        long_range_documents(num_documents=3, num_keys=1)
