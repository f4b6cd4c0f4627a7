"""Stream batching: the worked example, every token scored once, per-rank rows, epoch offsets."""

import pytest
import torch

from data.streams import StreamSegments, encode_stream
from data.tokenizers import EOS_TOKEN, train_tokenizer


def all_batches(dataset):
    return [dataset[t] for t in range(len(dataset))]


def test_worked_example_from_the_docstring():
    batches = all_batches(StreamSegments(torch.arange(10), num_streams=2, tgt_len=2))
    assert [b["input_ids"].tolist() for b in batches] == [[[0, 1], [5, 6]], [[2, 3], [7, 8]]]
    assert [b["target_ids"].tolist() for b in batches] == [[[1, 2], [6, 7]], [[3, 4], [8, 9]]]
    assert [b["segment_index"] for b in batches] == [0, 1]


@pytest.mark.parametrize(("num_tokens", "num_streams", "tgt_len"), [(103, 4, 5), (40, 2, 7), (30, 3, 1)])
def test_every_token_after_a_rows_first_is_scored_exactly_once(num_tokens, num_streams, tgt_len):
    dataset = StreamSegments(torch.arange(num_tokens), num_streams=num_streams, tgt_len=tgt_len)
    batches = all_batches(dataset)
    targets = torch.cat([b["target_ids"] for b in batches], dim=1)
    assert torch.equal(targets, dataset.rows[:, 1:])
    assert targets.numel() == dataset.num_scored_tokens
    for batch in batches:  # each label is the token after its input
        assert torch.equal(batch["target_ids"][:, :-1], batch["input_ids"][:, 1:])
    assert batches[-1]["input_ids"].shape[1] <= tgt_len  # the last segment may be shorter


def test_consecutive_batches_continue_each_row():
    batches = all_batches(StreamSegments(torch.arange(60), num_streams=3, tgt_len=4))
    for before, after in zip(batches, batches[1:], strict=False):
        assert torch.equal(after["input_ids"][:, 0], before["target_ids"][:, -1])


def test_ranks_own_disjoint_whole_rows_that_cover_the_global_streams():
    tokens = torch.arange(64)
    whole = StreamSegments(tokens, num_streams=4, tgt_len=3)
    ranks = [StreamSegments(tokens, num_streams=4, tgt_len=3, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat([r.rows for r in ranks]), whole.rows)
    assert len(ranks[0]) == len(ranks[1]) == len(whole)


def test_epoch_offset_moves_the_start_but_keeps_streams_contiguous():
    dataset = StreamSegments(torch.arange(200), num_streams=2, tgt_len=8, shuffle_offset=True, seed=1)
    first_epoch_rows = dataset.rows.clone()
    dataset.set_epoch(3)
    assert not torch.equal(dataset.rows[:, :5], first_epoch_rows[:, :5])
    assert torch.all(dataset.rows[:, 1:] - dataset.rows[:, :-1] == 1)  # still contiguous slices
    dataset.set_epoch(0)
    assert torch.equal(dataset.rows, first_epoch_rows)


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="divisible by world_size"):
        StreamSegments(torch.arange(100), num_streams=3, tgt_len=4, world_size=2)
    with pytest.raises(ValueError, match="too few"):
        StreamSegments(torch.arange(3), num_streams=2, tgt_len=4)


def test_encode_stream_adds_one_eos_per_line():
    tokenizer = train_tokenizer(["a b c", "b c"], kind="word", vocab_size=20)
    ids = encode_stream(["a b", "", "c"], tokenizer)
    eos = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    assert (
        ids.tolist() == tokenizer(f"a b {EOS_TOKEN} {EOS_TOKEN} c {EOS_TOKEN}")["input_ids"] and (ids == eos).sum() == 3
    )
