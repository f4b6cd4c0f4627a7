"""A training split mixed from several sources (`dataset_mixture`): Hub data sets or local files, each with the
fraction of its rows kept (`weight`), as in alignment-handbook's mixtures.

In a recipe's YAML (on the command line: the same list as one JSON string):

    dataset_mixture:
      - {path: data/a.tsv, weight: 0.75}
      - {path: stanfordnlp/sst2, weight: 0.25, split: train, revision: main}

`path` is a local file when it ends in a data file's extension (`.csv`, `.tsv`, `.json`, `.jsonl`, `.txt`,
`.parquet`), else a Hub data set (or a local data set folder); `split` (default `train`), `dataset_config_name`
and `revision` (a branch, tag or commit; default the Hub's default branch) apply to Hub data sets only. A source
keeps `floor(weight * rows)` of its rows, drawn with the run's seed and the source's position in the list, in their
original order; the mixture is the sources' kept rows one after the other (the trainer shuffles them). The entries'
values are checked when the configuration is parsed (`recipes.kit.arguments.parse_dataset_mixture`); this module
reads the sources.
"""

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from .errors import DataError
from .files import SUPPORTED_EXTENSIONS

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MixtureSource:
    """One entry of a `dataset_mixture` (its values checked when the configuration is parsed); see the module
    docstring."""

    path: str
    weight: float = 1.0
    split: str | None = None
    dataset_config_name: str | None = None
    revision: str | None = None

    @property
    def is_local_file(self) -> bool:
        return Path(self.path).suffix.lower() in SUPPORTED_EXTENSIONS

    @property
    def description(self) -> str:
        """`a.tsv`, or a Hub data set's split: `stanfordnlp/sst2 [train]`, `stanfordnlp/sst2@v1.0 [train]`."""
        if self.is_local_file:
            return self.path
        return f"{self.path}{f'@{self.revision}' if self.revision else ''} [{self.split or 'train'}]"


def mixture_sources(entries: Sequence[dict[str, Any]] | None) -> list[MixtureSource]:
    """The sources of a parsed `dataset_mixture` (`[]` for None); `DataError` naming the entry when a local file
    is given a Hub data set's `split`, `dataset_config_name` or `revision`."""
    sources = [MixtureSource(**entry) for entry in entries or ()]
    for index, source in enumerate(sources):
        if source.is_local_file and (source.split, source.dataset_config_name, source.revision) != (None,) * 3:
            raise DataError(
                f"dataset_mixture[{index}] {source.path}: split, dataset_config_name and revision apply to Hub data "
                "sets, not to a local file"
            )
    return sources


def keep_fraction(rows: datasets.Dataset, fraction: float, *, seed: Sequence[int] | int) -> datasets.Dataset:
    """`floor(fraction * len(rows))` of `rows`, drawn with `seed` (numpy's PCG64: the same on every process and
    machine), in their original order."""
    count = int(fraction * len(rows))
    kept = np.sort(np.random.default_rng(seed).permutation(len(rows))[:count])
    return rows.select(kept)


def load_mixture(
    sources: Sequence[MixtureSource],
    load_task: Callable[..., datasets.DatasetDict],
    *,
    seed: int,
    **task_arguments: Any,
) -> datasets.Dataset:
    """The mixed training rows: each source read by the task's loader (`load_sentiment_dataset`,
    `load_qa_dataset`: rows converted and checked, bad ones named by file and line) with `task_arguments`,
    `keep_fraction` of it drawn with the seed `(seed, position in the list)`, concatenated in the order of
    `sources`. A source that keeps no row, or whose rows have other columns than the first's, fails naming it."""
    parts = []
    for index, source in enumerate(sources):
        where = f"dataset_mixture[{index}] {source.description}"
        rows = _source_rows(source, load_task, task_arguments)
        kept = keep_fraction(rows, source.weight, seed=(seed, index))
        if len(kept) == 0:
            raise DataError(f"{where}: weight {source.weight} of its {len(rows)} rows keeps none")
        if parts and kept.column_names != parts[0].column_names:
            raise DataError(f"{where}: columns {kept.column_names}, the first source's are {parts[0].column_names}")
        logger.info("%s: %d of %d rows (weight %g)", where, len(kept), len(rows), source.weight)
        parts.append(kept)
    mixed = datasets.concatenate_datasets(parts)
    logger.info("dataset_mixture: %d training rows from %d sources", len(mixed), len(parts))
    return mixed


def _source_rows(
    source: MixtureSource, load_task: Callable[..., datasets.DatasetDict], task_arguments: dict[str, Any]
) -> datasets.Dataset:
    if source.is_local_file:
        return load_task(train_file=source.path, **task_arguments)["train"]
    splits = load_task(
        dataset_name=source.path,
        dataset_config_name=source.dataset_config_name,
        dataset_revision=source.revision,
        **task_arguments,
    )
    split = source.split or "train"
    if split not in splits:
        raise DataError(f"{source.path}: no split {split!r} (have {sorted(splits)})")
    return splits[split]
