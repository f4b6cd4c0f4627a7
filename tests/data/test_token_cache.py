"""Token streams cached on disk and memory-mapped: the ids of `encode_stream`, one file per split and setting,
invalidated by any change of data, tokenizer or setting, and never trusted after an interrupted write."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import pre_tokenizers

from data.lm_corpus import text_corpus_splits
from data.streams import StreamSegments, encode_stream
from data.token_cache import _PYTHON_ONLY_WHITESPACE, prepare_token_streams, token_stream, train_tokenizer_once
from data.tokenizers import EOS_TOKEN, train_tokenizer

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("token_cache_worker.py")
LINES = ["the cat sat", "", "a dog <unk> ran far", "the cat ran", "zebra  spaced   words", "the end"] * 30


def write_corpus(folder: Path, lines: list[str] = LINES) -> dict[str, str]:
    (folder / "train.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "valid.txt").write_text("\n".join(reversed(lines[:20])) + "\n", encoding="utf-8")
    return {"train_file": str(folder / "train.txt"), "validation_file": str(folder / "valid.txt")}


def cached_files(cache: Path) -> list[str]:
    return sorted(path.name for path in cache.glob("*.npy"))


@pytest.mark.parametrize(("kind", "add_eos"), [("word", True), ("bpe", False), ("bpe", True)])
def test_cached_stream_has_the_ids_of_encode_stream(tmp_path, kind, add_eos):
    corpus = text_corpus_splits(**write_corpus(tmp_path))
    tokenizer = train_tokenizer(corpus["train"], kind=kind, vocab_size=300)
    streams = prepare_token_streams(corpus, tokenizer, add_eos=add_eos, cache_dir=tmp_path / "cache")
    for name, split in corpus.items():
        expected = encode_stream(list(split), tokenizer, add_eos=add_eos)
        assert streams[name].dtype == torch.int32
        assert torch.equal(streams[name].long(), expected), name
    if kind == "word":  # one <eos> per line, empty lines included (BPE spells "<eos>" with several ids)
        eos = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
        assert int((streams["train"] == eos).sum()) == len(LINES)


def test_a_second_call_maps_the_cached_file_without_tokenising(tmp_path, monkeypatch):
    corpus = text_corpus_splits(**write_corpus(tmp_path))
    tokenizer = train_tokenizer(corpus["train"], kind="word", vocab_size=100)
    first = token_stream(corpus["train"], tokenizer, add_eos=True, cache_dir=tmp_path)
    monkeypatch.setattr("data.token_cache._encode_batches", lambda *args, **kwargs: pytest.fail("tokenised again"))
    second = token_stream(corpus["train"], tokenizer, add_eos=True, cache_dir=tmp_path)
    assert torch.equal(first, second) and len(cached_files(tmp_path)) == 1


def test_segments_of_the_mapped_stream_are_views_handed_out_as_int64(tmp_path):
    corpus = text_corpus_splits(**write_corpus(tmp_path))
    tokenizer = train_tokenizer(corpus["train"], kind="word", vocab_size=100)
    stream = token_stream(corpus["train"], tokenizer, add_eos=True, cache_dir=tmp_path)
    segments = StreamSegments(stream, num_streams=4, tgt_len=8, rank=1, world_size=2)
    assert segments.rows.untyped_storage().data_ptr() == stream.untyped_storage().data_ptr()  # no copy per rank
    reference = StreamSegments(
        encode_stream(list(corpus["train"]), tokenizer), num_streams=4, tgt_len=8, rank=1, world_size=2
    )
    for t in range(len(segments)):
        item, expected = segments[t], reference[t]
        assert item["input_ids"].dtype == torch.long
        assert torch.equal(item["input_ids"], expected["input_ids"])
        assert torch.equal(item["target_ids"], expected["target_ids"])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: data[:-6], "bytes, its header promises"),  # cut short inside the ids
        (lambda data: data[:100], "unreadable header"),  # cut inside the header
        (lambda data: b"", "unreadable header"),  # a file created, nothing written
        (lambda data: data + b"\0" * 8, "bytes, its header promises"),  # longer than its header says
        (lambda data: b"\0" * len(data), "unreadable header"),  # overwritten with zeros
    ],
    ids=["cut-in-ids", "cut-in-header", "empty", "too-long", "zeroed"],
)
def test_a_damaged_cache_file_is_named_and_rebuilt(tmp_path, caplog, damage, reason):
    corpus = text_corpus_splits(**write_corpus(tmp_path))
    tokenizer = train_tokenizer(corpus["train"], kind="word", vocab_size=100)
    token_stream(corpus["train"], tokenizer, add_eos=True, cache_dir=tmp_path / "cache")
    (path,) = (tmp_path / "cache").glob("train-*.npy")
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level("WARNING", logger="data.token_cache"):
        stream = token_stream(corpus["train"], tokenizer, add_eos=True, cache_dir=tmp_path / "cache")
    assert torch.equal(stream.long(), encode_stream(LINES, tokenizer))
    (message,) = [record.getMessage() for record in caplog.records]
    assert message.startswith(f"{path}: ") and reason in message and "tokenising split 'train' again" in message
    assert cached_files(tmp_path / "cache") == [path.name]


def test_a_changed_file_tokenizer_or_setting_gets_its_own_cache(tmp_path):
    files = write_corpus(tmp_path)
    cache = tmp_path / "cache"
    train = text_corpus_splits(**files)["train"]
    tokenizer = train_tokenizer(train, kind="word", vocab_size=100)
    token_stream(train, tokenizer, add_eos=True, cache_dir=cache)
    assert len(cached_files(cache)) == 1

    token_stream(train, tokenizer, add_eos=False, cache_dir=cache)  # setting
    token_stream(train, train_tokenizer(train, kind="word", vocab_size=5), add_eos=True, cache_dir=cache)  # tokenizer
    assert len(cached_files(cache)) == 3

    write_corpus(tmp_path, LINES + ["a new last line"])  # file (size and mtime change)
    changed = token_stream(text_corpus_splits(**files)["train"], tokenizer, add_eos=True, cache_dir=cache)
    assert len(cached_files(cache)) == 4
    assert torch.equal(changed.long(), encode_stream(LINES + ["a new last line"], tokenizer))


def test_the_trained_tokenizer_is_cached_per_training_file_kind_and_size(tmp_path, monkeypatch):
    train = text_corpus_splits(**write_corpus(tmp_path))["train"]
    first = train_tokenizer_once(train, kind="word", vocab_size=100, cache_dir=tmp_path)
    assert first.get_vocab() == train_tokenizer(LINES, kind="word", vocab_size=100).get_vocab()
    monkeypatch.setattr("data.token_cache.train_tokenizer", lambda *args, **kwargs: pytest.fail("trained again"))
    again = train_tokenizer_once(train, kind="word", vocab_size=100, cache_dir=tmp_path)
    assert again.backend_tokenizer.to_str() == first.backend_tokenizer.to_str()


def test_a_tokenizer_trained_on_texts_in_memory_is_cached_by_their_content(tmp_path, monkeypatch):
    sentences = ["a fine film", "a dull film", "the cast is fine"] * 10
    first = train_tokenizer_once(tuple(sentences), kind="wordpiece", vocab_size=60, cache_dir=tmp_path)
    trained = []
    monkeypatch.setattr(
        "data.token_cache.train_tokenizer", lambda *a, **k: trained.append(1) or train_tokenizer(*a, **k)
    )
    again = train_tokenizer_once(list(sentences), kind="wordpiece", vocab_size=60, cache_dir=tmp_path)
    assert trained == [] and again.backend_tokenizer.to_str() == first.backend_tokenizer.to_str()
    train_tokenizer_once(sentences[:-1], kind="wordpiece", vocab_size=60, cache_dir=tmp_path)  # other texts
    for texts in (["a fine film", "a dull film"], ["a fine fil", "ma dull film"]):  # same characters, other lines
        train_tokenizer_once(texts, kind="wordpiece", vocab_size=60, cache_dir=tmp_path)
    assert trained == [1, 1, 1] and len(list(tmp_path.glob("tokenizer-wordpiece-*"))) == 4


class Reiterable:
    """The texts made afresh on each iteration, as `data.loading.RowTexts` gives them."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def __iter__(self):
        yield from self.texts


def test_a_tokenizer_cached_by_an_earlier_trainer_is_trained_again(tmp_path, monkeypatch):
    # A cache filled before the trainer changed (the Rust merges, TRAINER_VERSION 1) holds another vocabulary.
    sentences = ["a fine film", "a dull film", "the cast is fine"] * 10
    monkeypatch.setattr("data.token_cache.TRAINER_VERSION", 1)
    train_tokenizer_once(sentences, kind="wordpiece", vocab_size=60, cache_dir=tmp_path)
    monkeypatch.undo()
    trained = []
    monkeypatch.setattr(
        "data.token_cache.train_tokenizer", lambda *a, **k: trained.append(1) or train_tokenizer(*a, **k)
    )
    train_tokenizer_once(sentences, kind="wordpiece", vocab_size=60, cache_dir=tmp_path)
    assert trained == [1] and len(list(tmp_path.glob("tokenizer-wordpiece-*"))) == 2


def test_texts_in_memory_stream_into_the_trainer_and_give_the_vocabulary_of_a_list(tmp_path, monkeypatch):
    sentences = [f"{w} film {i % 7}" for i, w in enumerate(["fine", "dull", "bold", "wry", "lush"] * 40)]
    received = []

    def recording_train_tokenizer(texts, **kwargs):
        received.append(type(texts))
        return train_tokenizer(texts, **kwargs)

    monkeypatch.setattr("data.token_cache.train_tokenizer", recording_train_tokenizer)
    streamed = train_tokenizer_once(Reiterable(sentences), kind="bpe", vocab_size=120, cache_dir=tmp_path / "a")
    from_list = train_tokenizer_once(sentences, kind="bpe", vocab_size=120, cache_dir=tmp_path / "b")
    assert not any(issubclass(kind, (list, tuple)) for kind in received)  # never gathered into a list first
    assert (
        streamed.get_vocab()
        == from_list.get_vocab()
        == train_tokenizer(sentences, kind="bpe", vocab_size=120).get_vocab()
    )


def test_a_one_shot_iterator_of_texts_is_refused(tmp_path):
    with pytest.raises(TypeError, match="re-iterable"):
        train_tokenizer_once(iter(["a fine film"]), kind="bpe", vocab_size=60, cache_dir=tmp_path)


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import data.token_cache as token_cache
    from data.lm_corpus import text_corpus_splits
    from data.tokenizers import train_tokenizer

    encode = token_cache._encode_batches
    def encode_then_die(*args, **kwargs):
        for number, chunk in enumerate(encode(*args, **kwargs)):
            if number == 2:  # two batches written: killed mid-way through tokenising
                os.kill(os.getpid(), signal.SIGKILL)
            yield chunk
    token_cache._encode_batches = encode_then_die
    train = text_corpus_splits(train_file=sys.argv[1])["train"]
    tokenizer = train_tokenizer(train, kind="word", vocab_size=100)
    token_cache.token_stream(train, tokenizer, add_eos=True, cache_dir=sys.argv[2])
    """
)


@pytest.mark.slow
def test_a_preparation_killed_mid_way_leaves_no_cache_a_later_run_trusts(tmp_path):
    lines = [f"line {i} of the corpus" for i in range(50_000)]  # 5 batches of 10,000 lines
    files = write_corpus(tmp_path, lines)
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, files["train_file"], str(cache)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    leftovers = [path.name for path in cache.iterdir()]
    assert cached_files(cache) == [] and len(leftovers) == 1 and ".npy.tmp-" in leftovers[0]

    train = text_corpus_splits(**files)["train"]
    tokenizer = train_tokenizer(train, kind="word", vocab_size=100)
    stream = token_stream(train, tokenizer, add_eos=True, cache_dir=cache)
    assert torch.equal(stream.long(), encode_stream(lines, tokenizer))


@pytest.mark.slow
def test_two_processes_tokenise_once_and_cut_the_streams_of_encode_stream(tmp_path, launch):
    files = write_corpus(tmp_path)
    cache = tmp_path / "cache"
    launch(WORKER, files["train_file"], str(cache), str(tmp_path))
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert [r["world_size"] for r in reports] == [2, 2]
    assert sum(r["tokenised_splits"] for r in reports) == 1  # one process tokenised, the other mapped its file
    assert len(cached_files(cache)) == 1 and len(list(cache.glob("tokenizer-*"))) == 1

    tokenizer = train_tokenizer(LINES, kind="word", vocab_size=100)
    reference = encode_stream(LINES, tokenizer)
    for rank, report in enumerate(reports):
        expected = StreamSegments(reference, num_streams=4, tgt_len=5, rank=rank, world_size=2)
        assert report["rows"] == expected.rows.tolist()
        assert report["vocab"] == tokenizer.get_vocab()


def test_the_npy_file_reads_back_with_plain_numpy(tmp_path):
    corpus = text_corpus_splits(**write_corpus(tmp_path))
    tokenizer = train_tokenizer(corpus["train"], kind="word", vocab_size=100)
    stream = token_stream(corpus["train"], tokenizer, add_eos=True, cache_dir=tmp_path)
    (path,) = tmp_path.glob("train-*.npy")
    assert np.array_equal(np.load(path), stream.numpy())


@pytest.mark.parametrize(
    "lines",
    [LINES, ["a<eos>b c", "plain words"], ["<unk> <eos> <eos><unk>"], ["x\x1cy z"], ["wide\u3000space\xa0nbsp\x85x"]],
    ids=["plain", "glued-eos", "glued-unk", "python-only-space", "unicode-spaces"],
)
def test_word_lookup_gives_the_ids_of_the_rust_tokenizer_or_declines(tmp_path, lines):
    tokenizer = train_tokenizer(LINES + ["a b c x y z wide space"], kind="word", vocab_size=100)
    train = text_corpus_splits(**write_corpus(tmp_path, lines))["train"]
    stream = token_stream(train, tokenizer, add_eos=True, cache_dir=tmp_path / "cache")
    assert torch.equal(stream.long(), encode_stream(lines, tokenizer))


@pytest.mark.slow
def test_python_and_rust_split_on_the_same_whitespace_but_the_listed_characters():
    split = pre_tokenizers.WhitespaceSplit().pre_tokenize_str
    characters = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]  # surrogates cannot reach Rust
    differ = [char for char in characters if char.isspace() != (len(split(f"a{char}b")) == 2)]
    assert "".join(differ) == _PYTHON_ONLY_WHITESPACE
