"""Stream batching: the worked examples, every token scored once, per-rank rows, epoch offsets; training blocks
and evaluation windows of models without memory."""

import pytest
import torch

from data.errors import DataError
from data.streams import SlidingWindows, StreamSegments, TokenBlocks, encode_stream
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


def test_worked_example_of_uneven_ranks_and_row_groups_from_the_docstring():
    def items(rank):
        dataset = StreamSegments(
            torch.arange(14), num_streams=3, tgt_len=2, rank=rank, world_size=2, max_rows_per_batch=1
        )
        return [(b["input_ids"].tolist(), b["target_ids"].tolist(), b["segment_index"]) for b in all_batches(dataset)]

    assert items(0) == [([[0, 1]], [[1, 2]], 0), ([[2]], [[3]], 1), ([[4, 5]], [[5, 6]], 0), ([[6]], [[7]], 1)]
    assert items(1) == [([[8, 9]], [[9, 10]], 0), ([[10]], [[11]], 1)]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("max_rows_per_batch", [None, 1, 2])
def test_any_number_of_ranks_scores_the_same_tokens_once(world_size, max_rows_per_batch):
    """4 streams over 1..6 ranks: the rows do not depend on the ranks; each rank holds a contiguous block of
    them (block sizes differ by at most one, some empty beyond 4 ranks) and scores each of its tokens after
    a row's first once, restarting the memory (`segment_index` 0) at each row's first segment."""
    tokens = torch.arange(103)
    whole = StreamSegments(tokens, num_streams=4, tgt_len=5)
    ranks = [
        StreamSegments(
            tokens, num_streams=4, tgt_len=5, rank=r, world_size=world_size, max_rows_per_batch=max_rows_per_batch
        )
        for r in range(world_size)
    ]
    assert torch.equal(torch.cat([r.rows for r in ranks]), whole.rows)
    sizes = [len(r.rows) for r in ranks]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    scored = []
    for dataset in ranks:
        batches = all_batches(dataset)
        for before, after in zip(batches, batches[1:]):
            if after["segment_index"]:  # the same rows continue; else a new group starts
                assert torch.equal(after["input_ids"][:, 0], before["target_ids"][:, -1])
            assert after["input_ids"].shape[0] <= (max_rows_per_batch or 4)
        starts = [b["input_ids"][:, 0] for b in batches if b["segment_index"] == 0]
        assert torch.equal(torch.cat(starts) if starts else torch.empty(0, dtype=torch.long), dataset.rows[:, 0])
        scored += [t for b in batches for t in b["target_ids"].flatten().tolist()]
    assert sorted(scored) == whole.rows[:, 1:].flatten().tolist()
    assert len(scored) == sum(r.num_scored_tokens for r in ranks) == whole.num_scored_tokens == 4 * (103 // 4 - 1)


def test_epoch_offset_moves_the_start_but_keeps_streams_contiguous():
    dataset = StreamSegments(torch.arange(200), num_streams=2, tgt_len=8, shuffle_offset=True, seed=1)
    first_epoch_rows = dataset.rows.clone()
    dataset.set_epoch(3)
    assert not torch.equal(dataset.rows[:, :5], first_epoch_rows[:, :5])
    assert torch.all(dataset.rows[:, 1:] - dataset.rows[:, :-1] == 1)  # still contiguous slices
    dataset.set_epoch(0)
    assert torch.equal(dataset.rows, first_epoch_rows)


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="num_streams=0"):
        StreamSegments(torch.arange(100), num_streams=0, tgt_len=4)
    with pytest.raises(ValueError, match="max_rows_per_batch=0"):
        StreamSegments(torch.arange(100), num_streams=3, tgt_len=4, max_rows_per_batch=0)
    with pytest.raises(ValueError, match="too few"):
        StreamSegments(torch.arange(3), num_streams=2, tgt_len=4)


def test_encode_stream_adds_one_eos_per_line():
    tokenizer = train_tokenizer(["a b c", "b c"], kind="word", vocab_size=20)
    ids = encode_stream(["a b", "", "c"], tokenizer)
    eos = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    assert (
        ids.tolist() == tokenizer(f"a b {EOS_TOKEN} {EOS_TOKEN} c {EOS_TOKEN}")["input_ids"] and (ids == eos).sum() == 3
    )


def test_a_stream_too_short_to_cut_is_a_data_error_naming_its_source_and_what_to_lower():
    with pytest.raises(DataError, match=r"^a\.txt: 3 tokens are too few for 8 streams .*: lower per_device_train_"):
        StreamSegments(
            torch.arange(3), num_streams=8, tgt_len=2, source="a.txt", num_streams_from="per_device_train_batch_size"
        )
    with pytest.raises(DataError, match=r"^a\.txt: 3 tokens: fewer than one block of block_size 4: lower block_size"):
        TokenBlocks(torch.arange(3), block_size=4, source="a.txt")
    with pytest.raises(DataError, match=r"^a\.txt: 1 tokens: nothing to score"):
        SlidingWindows(torch.arange(1), block_size=4, stride=2, source="a.txt")


def test_token_blocks_worked_example_from_the_docstring():
    blocks = TokenBlocks(torch.arange(10), block_size=4)
    assert [blocks[i]["input_ids"].tolist() for i in range(len(blocks))] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert all(torch.equal(blocks[i]["labels"], blocks[i]["input_ids"]) for i in range(len(blocks)))
    with pytest.raises(ValueError, match="fewer than one block"):
        TokenBlocks(torch.arange(3), block_size=4)


def test_sliding_windows_worked_example_from_the_docstring():
    windows = all_batches(SlidingWindows(torch.arange(11), block_size=4, stride=2))
    assert [w["input_ids"].tolist() for w in windows] == [
        [0, 1, 2, 3],
        [2, 3, 4, 5],
        [4, 5, 6, 7],
        [6, 7, 8, 9],
        [7, 8, 9, 10],
    ]
    assert [w["labels"].tolist() for w in windows] == [
        [-100, 1, 2, 3],
        [-100, -100, 4, 5],
        [-100, -100, 6, 7],
        [-100, -100, 8, 9],
        [-100, -100, -100, 10],
    ]


@pytest.mark.parametrize(
    ("num_tokens", "block_size", "stride"), [(4400, 64, 32), (4400, 64, 63), (103, 8, 3), (10, 4, 1), (5, 16, 8)]
)
def test_sliding_windows_score_every_token_after_the_first_once_with_its_context(num_tokens, block_size, stride):
    stream = torch.arange(100, 100 + num_tokens)  # ids = 100 + position: a label tells where it sits in the stream
    windows = SlidingWindows(stream, block_size=block_size, stride=stride)
    scored = []
    for window in all_batches(windows):
        input_ids, labels = window["input_ids"], window["labels"]
        start = int(input_ids[0]) - 100
        assert torch.equal(input_ids, stream[start : start + len(input_ids)])  # a contiguous slice of the stream
        assert len(input_ids) == min(block_size, num_tokens)  # equal lengths: batches stack without padding
        (positions,) = (labels != -100).nonzero(as_tuple=True)
        assert torch.equal(labels[positions], input_ids[positions])  # a label is the token at its position
        # A scored token's position in its window is its context: all the stream before it, or at least
        # block_size - stride tokens.
        tokens = labels[positions] - 100
        assert torch.all(positions >= torch.clamp(tokens, max=block_size - stride))
        scored += tokens.tolist()
    assert scored == list(range(1, num_tokens)) == list(range(1, windows.num_scored_tokens + 1))


def test_sliding_windows_reject_a_stride_that_leaves_tokens_unscored_and_a_stream_with_nothing_to_score():
    with pytest.raises(ValueError, match="stride < block_size"):
        SlidingWindows(torch.arange(100), block_size=8, stride=8)
    with pytest.raises(ValueError, match="1 <= stride"):
        SlidingWindows(torch.arange(100), block_size=8, stride=0)
    with pytest.raises(ValueError, match="nothing to score"):
        SlidingWindows(torch.arange(1), block_size=8, stride=4)
