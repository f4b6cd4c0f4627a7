"""`dataset_mixture` (`data.mixtures`): entries checked by name, rows kept per source in the given proportions,
seeded, and bad rows still named by file and line."""

import json
from pathlib import Path

import pytest

from data.closed_book_qa import load_qa_dataset
from data.errors import DataError
from data.mixtures import MixtureSource, load_mixture, mixture_sources
from data.sentiment import load_sentiment_dataset


def sentiment_file(path: Path, source: str, rows: int) -> str:
    """`rows` labelled sentences that say which file and row they come from."""
    lines = ["sentence\tlabel", *(f"{source} sentence {i}\t{i % 2}" for i in range(rows))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def two_file_mixture(tmp_path: Path) -> list[MixtureSource]:
    return mixture_sources(
        [
            {"path": sentiment_file(tmp_path / "a.tsv", "a", 2000), "weight": 0.75},
            {"path": sentiment_file(tmp_path / "b.tsv", "b", 2000), "weight": 0.25},
        ]
    )


def test_weights_keep_those_fractions_of_each_source(tmp_path):
    mixed = load_mixture(two_file_mixture(tmp_path), load_sentiment_dataset, seed=42)
    sources = [text.split()[0] for text in mixed["text"]]
    # floor(0.75 * 2000) = 1500 rows of a.tsv, floor(0.25 * 2000) = 500 of b.tsv: exact, well within 2%.
    assert (sources.count("a"), sources.count("b")) == (1500, 500)
    assert len(set(mixed["text"])) == 2000  # drawn without replacement
    kept_a = [int(text.split()[-1]) for text in mixed["text"] if text.startswith("a ")]
    assert kept_a == sorted(kept_a) and kept_a != list(range(1500))  # a seeded draw, in file order


def test_the_mixture_is_reproducible_from_the_seed(tmp_path):
    sources = two_file_mixture(tmp_path)
    first, again, other = (list(load_mixture(sources, load_sentiment_dataset, seed=s)["text"]) for s in (1, 1, 2))
    assert first == again and first != other


@pytest.mark.parametrize(("key", "value"), [("split", "validation"), ("revision", "v1.0")])
def test_a_local_file_given_a_hub_split_or_revision_fails_naming_the_entry(key, value):
    with pytest.raises(DataError, match=r"dataset_mixture\[1\] b.tsv: split, dataset_config_name and revision apply"):
        mixture_sources([{"path": "a.tsv"}, {"path": "b.tsv", key: value}])


def test_a_bad_row_of_the_second_source_is_named_by_file_and_line(tmp_path):
    good = sentiment_file(tmp_path / "a.tsv", "a", 10)
    bad = tmp_path / "b.tsv"
    bad.write_text("sentence\tlabel\nfine\t1\nno label here\n", encoding="utf-8")
    sources = mixture_sources([{"path": good, "weight": 0.5}, {"path": str(bad), "weight": 0.5}])
    with pytest.raises(DataError, match=f"{bad}, line 3: 1 fields"):
        load_mixture(sources, load_sentiment_dataset, seed=0)


def test_a_weight_that_keeps_no_row_fails_naming_the_source(tmp_path):
    sources = mixture_sources([{"path": sentiment_file(tmp_path / "a.tsv", "a", 3), "weight": 0.2}])
    with pytest.raises(DataError, match=r"dataset_mixture\[0\] .*a.tsv: weight 0.2 of its 3 rows keeps none"):
        load_mixture(sources, load_sentiment_dataset, seed=0)


def test_qa_sources_mix_the_same_way(tmp_path):
    files = []
    for name in ("a", "b"):
        rows = [{"question": f"{name} question {i}?", "answer": [f"{name}{i}"]} for i in range(100)]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        files.append(str(tmp_path / f"{name}.jsonl"))
    sources = mixture_sources([{"path": files[0], "weight": 0.3}, {"path": files[1], "weight": 0.6}])
    mixed = load_mixture(sources, load_qa_dataset, seed=0)
    assert [question[0] for question in mixed["question"]] == ["a"] * 30 + ["b"] * 60


def test_a_source_without_a_file_extension_is_read_as_a_hub_data_set_and_its_split(tmp_path):
    # `datasets.load_dataset` reads a Hub name or, offline as here, a local data set folder the same way.
    folder = tmp_path / "hub_like"
    folder.mkdir()
    (folder / "train.csv").write_text("sentence,label\n" + "".join(f"train {i},{i % 2}\n" for i in range(40)))
    (folder / "validation.csv").write_text("sentence,label\n" + "".join(f"validation {i},1\n" for i in range(20)))
    local = sentiment_file(tmp_path / "a.tsv", "a", 10)
    sources = mixture_sources([{"path": str(folder), "split": "validation", "weight": 0.5}, {"path": local}])
    mixed = load_mixture(sources, load_sentiment_dataset, seed=0)
    assert [text.split()[0] for text in mixed["text"]] == ["validation"] * 10 + ["a"] * 10
    assert sources[0] == MixtureSource(path=str(folder), weight=0.5, split="validation")
    with pytest.raises(DataError, match=f"{folder}: no split 'test'"):
        load_mixture(mixture_sources([{"path": str(folder), "split": "test"}]), load_sentiment_dataset, seed=0)
