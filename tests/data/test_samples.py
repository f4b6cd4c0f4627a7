"""The shipped sample data is exactly what the generator writes, and the synthetic corpus does its job."""

import pytest

from data.samples import SAMPLES_DIR
from data.samples.make_samples import write_samples
from data.synthetic import COPY_MARKER, REPEAT_MARKER, long_range_documents


def test_committed_samples_equal_the_generator_output(tmp_path):
    for path in write_samples(tmp_path):
        committed = SAMPLES_DIR / path.relative_to(tmp_path)
        assert committed.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), committed


def test_long_range_documents_repeat_the_span_after_the_marker():
    documents = long_range_documents(num_documents=50, num_symbols=4, span_length=30, seed=3)
    for document in documents:
        tokens = document.split()
        assert tokens[0] == COPY_MARKER and tokens[31] == REPEAT_MARKER and len(tokens) == 62
        for i in range(32, 62):  # each repeated token equals the one span_length + 1 positions earlier
            assert tokens[i] == tokens[i - 31]
    assert len({token for d in documents for token in d.split()[1:31]}) == 4


def test_long_range_documents_are_deterministic_given_the_seed():
    assert long_range_documents(num_documents=5, seed=1) == long_range_documents(num_documents=5, seed=1)
    assert long_range_documents(num_documents=20, seed=1) != long_range_documents(num_documents=20, seed=2)


def test_long_range_documents_reject_degenerate_settings():
    with pytest.raises(ValueError, match="num_symbols >= 2"):
        long_range_documents(num_documents=3, num_symbols=1)
