"""A classification row's label as the model's target, for each of transformers' `problem_type`s.

- `single_label_classification`: one class, given by its name (`"positive"`) or its id (`1`, `"1"`) -> its id.
- `multi_label_classification`: a set of classes, each a name or an id, given as a list (JSON, or a Hub
  `Sequence` column) or as a string of them joined by `separator` (`"sports,politics"`: the form a csv / tsv cell
  takes; quote it in a csv when the separator is a comma) -> a multi-hot float vector over the label names. `[]` is
  the empty set; an empty cell is a missing label, as in the other problem types.
- `regression`: a finite number (`3.8`, `"3.8"`) -> a float; the label names are not used.

A value that does not fit raises `DataError` naming where it was read (`location`: file and line, or Hub row).
"""

import math
import re
from collections.abc import Callable, Sequence

import datasets

from .errors import DataError

PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
#: A label given as its id: what both the row path (`label_id`) and the columnar path of `data.sentiment` read as one.
LABEL_ID = "-?[0-9]+"
#: What a parsed label is: a class id, a multi-hot vector, or a score.
Label = int | list[float] | float


def label_feature(problem_type: str, num_labels: int) -> datasets.Value | datasets.Sequence:
    """The `datasets` feature of the parsed labels of `problem_type` over `num_labels` classes."""
    if problem_type == "multi_label_classification":
        return datasets.Sequence(datasets.Value("float32"), length=num_labels)
    return datasets.Value("float32" if problem_type == "regression" else "int64")


def label_parser(problem_type: str, label_names: Sequence[str], separator: str) -> Callable[[object, str], Label]:
    """`parse(value, location)`: the target of `problem_type` for a label value (module docstring)."""
    names = list(label_names)
    if problem_type == "single_label_classification":
        return lambda value, location: label_id(value, names, location)
    if problem_type == "multi_label_classification":
        return lambda value, location: multi_hot(value, names, separator, location)
    if problem_type == "regression":
        return regression_target
    raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {problem_type!r}")


def is_unlabelled(value: object, problem_type: str) -> bool:
    """Whether a test row's label `value` means "no label": absent or blank; for the classifications also -1 (the
    hidden test labels of GLUE). In regression -1 is a score."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    hidden = value == -1 or (isinstance(value, str) and value.strip() == "-1")
    return problem_type != "regression" and not isinstance(value, bool) and hidden


def label_id(value: object, label_names: list[str], location: str) -> int:
    """The class id of a name or an id (int, or a string of digits) in `label_names`."""
    if isinstance(value, str):
        value = value.strip()
        if value in label_names:
            return label_names.index(value)
        if re.fullmatch(LABEL_ID, value):
            value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(label_names):
        raise DataError(
            f"{location}: label {value!r} is not in the label set (ids 0..{len(label_names) - 1} or names "
            f"{label_names})"
        )
    return value


def multi_hot(value: object, label_names: list[str], separator: str, location: str) -> list[float]:
    """1.0 at the id of each label of the set `value` (a list, a `separator`-joined string or one id), 0.0 elsewhere."""
    if isinstance(value, str):
        items = value.split(separator)
    elif isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    else:
        raise DataError(f"{location}: label {value!r} is not a list of labels (names or ids, or {separator!r}-joined)")
    vector = [0.0] * len(label_names)
    for item in items:
        vector[label_id(item, label_names, location)] = 1.0
    return vector


def regression_target(value: object, location: str) -> float:
    """`value` as a float: a number, or a string that reads as one; NaN and infinities refused."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        raise DataError(f"{location}: label {value!r} is not a number (regression)")
    if not math.isfinite(number):
        raise DataError(f"{location}: label {value!r} is not a finite number (regression)")
    return number
