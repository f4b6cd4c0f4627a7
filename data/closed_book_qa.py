"""Question/answer pairs for closed-book QA, normalised to NQ-open form `{"question", "answers": [...], "messages"}`.

Column mapping covers the common layouts: NQ-open (`question`, `answer`: list), TriviaQA (`question`,
`answer`: `{"value", "aliases", ...}`) and WebQuestions (`qText`, `answers`: list). Conversations load too, row by
row: OpenAI-style `messages` (a list of `{role, content}` turns, the last the assistant's answer) and TRL's
`prompt` / `completion` (each a string or such a list). Their turns before the answer (system, user, earlier
assistant turns; the last one the user's) become `messages`, the last user turn `question`, the answer the single
gold answer; a question/answer row has no `messages` (null).
"""

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columnar_rows import any_true, is_python_blank, strip_python_whitespace
from .errors import DataError
from .loading import build_dataset_dict, require, split_sources

TURN = {"role": datasets.Value("string"), "content": datasets.Value("string")}
FEATURES = datasets.Features(
    {
        "question": datasets.Value("string"),
        "answers": datasets.List(datasets.Value("string")),
        "messages": datasets.List(TURN),
    }
)
#: The roles a conversation's turns may have.
ROLES = ("system", "user", "assistant")


def load_qa_dataset(
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    dataset_revision: str | None = None,
    train_file: str | list[str] | None = None,
    validation_file: str | list[str] | None = None,
    test_file: str | list[str] | None = None,
    question_column: str = "question",
    answer_column: str = "answer",
    encoding: str = "utf-8",
) -> datasets.DatasetDict:
    """Loads `train` / `validation` / `test` (those given) with columns `question` (str) and `answers`
    (non-empty list of str).

    Raises `DataError` naming the file and line for a missing column, an empty question or an answer
    that is neither a string, a list of strings, nor a TriviaQA answer dict. The `test` split may come
    without answers (questions to answer): if none of its rows has one, the split has no `answers` column;
    a test file with some answers missing fails, naming the first row without one. The splits are Arrow files
    of the cache, read again only when a file or an option changes (`data.loading.build_dataset_dict`).
    """
    sources = split_sources(
        dataset_name=dataset_name,
        dataset_config_name=dataset_config_name,
        dataset_revision=dataset_revision,
        data_files={"train": train_file, "validation": validation_file, "test": test_file},
        encoding=encoding,
    )

    def convert(location: str, record: dict) -> dict:
        if is_conversation(record, question_column):
            return conversation_row(record, location, answered=True)
        question = str(require(record, question_column, location)).strip()
        answers = gold_answers(require(record, answer_column, location), location)
        return {"question": question, "answers": answers, "messages": None}

    def convert_test(location: str, record: dict) -> dict:
        if is_conversation(record, question_column):
            return conversation_row(record, location, answered=False)
        question = str(require(record, question_column, location)).strip()
        value = record.get(answer_column)
        return {"question": question, "answers": gold_answers(value, location) if value else None, "messages": None}

    def convert_table(table: pa.Table) -> pa.Table | None:
        if question_column not in table.column_names or answer_column not in table.column_names:
            return None
        question, answers = table[question_column], _gold_answer_lists(table[answer_column])
        if answers is None or not pa.types.is_string(question.type) or any_true(is_python_blank(question)):
            return None
        messages = pa.nulls(len(table), type=FEATURES.arrow_schema.field("messages").type)
        return pa.table({"question": strip_python_whitespace(question), "answers": answers, "messages": messages})

    return build_dataset_dict(
        sources,
        convert,
        splits=("train", "validation"),
        features=FEATURES,
        settings={"question_column": question_column, "answer_column": answer_column},
        test_convert=convert_test,
        convert_table=convert_table,
    )


def gold_answers(value: object, location: str) -> list[str]:
    """All acceptable answers in `value`: a string, a list of strings, or a TriviaQA dict."""
    if isinstance(value, dict):  # TriviaQA: the canonical value first, then its aliases
        value = [value.get("value"), *(value.get("aliases") or [])]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        kind = type(value).__name__
        raise DataError(f"{location}: answer must be a string or a list of strings, got {kind}")
    answers = list(dict.fromkeys(a.strip() for a in value if isinstance(a, str) and a.strip()))
    if not answers:
        raise DataError(f"{location}: no non-empty answer string in {value!r}")
    return answers


def is_conversation(record: dict, question_column: str) -> bool:
    """Whether `record` is a conversation: it has `messages`, or TRL's `prompt` and no `question_column`."""
    return "messages" in record or ("prompt" in record and question_column not in record)


def conversation_row(record: dict, location: str, *, answered: bool) -> dict:
    """A `messages` or `prompt` / `completion` record as a QA row: the turns before the answer as `messages`, the
    last user turn as `question`, the answer (the last assistant turn) as the only gold answer. `answered` False
    (a test split): a conversation ending with the user's turn is a question without answer (`answers` None)."""
    if "messages" in record:
        turns = chat_turns(record["messages"], location, "messages")
    else:
        prompt = record["prompt"]
        turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        turns = chat_turns(turns, location, "prompt")
        completion = record.get("completion")
        if completion is not None or answered:
            completion = [{"role": "assistant", "content": completion}] if isinstance(completion, str) else completion
            turns += chat_turns(completion, location, "completion")
    if turns[-1]["role"] == "assistant":
        turns, answers = turns[:-1], [turns[-1]["content"].strip()]
    elif answered:
        raise DataError(f"{location}: the last turn must be the assistant's answer, got a {turns[-1]['role']} turn")
    else:
        answers = None
    if not turns or turns[-1]["role"] != "user":
        raise DataError(f"{location}: the turn before the answer must be the user's question")
    return {"question": turns[-1]["content"].strip(), "answers": answers, "messages": turns}


def has_context_turns(rows: datasets.Dataset) -> bool:
    """Whether a row of `rows` has turns besides its question: a system turn, or earlier turns of its conversation."""
    table = rows.data.column("messages")  # every row of the file, the selected ones among them
    if table.null_count == len(table):  # question/answer rows only: no turn to read (nor page in)
        return False
    lengths = pc.list_value_length(rows.with_format("arrow")["messages"])
    return (pc.max(lengths).as_py() or 0) > 1


def chat_turns(value: object, location: str, field: str) -> list[dict[str, str]]:
    """`value` as a non-empty list of `{role, content}` turns (other keys dropped); a `DataError` naming `location`,
    `field` and the turn for anything else: not a list, a role not in `ROLES`, a content that is empty or not text."""
    if not isinstance(value, list) or not value:
        raise DataError(f"{location}: {field} must be a non-empty list of {{role, content}} turns, got {value!r}")
    turns = []
    for index, turn in enumerate(value):
        role, content = (turn.get("role"), turn.get("content")) if isinstance(turn, dict) else (None, None)
        if role not in ROLES:
            raise DataError(f"{location}: {field}[{index}] has role {role!r}; the roles are {', '.join(ROLES)}")
        if not isinstance(content, str) or not content.strip():
            raise DataError(f"{location}: {field}[{index}] ({role}) has no content")
        turns.append({"role": role, "content": content})
    return turns


def _gold_answer_lists(column: pa.ChunkedArray) -> pa.ListArray | None:
    """`gold_answers` of a column of strings or lists of strings: each list stripped, without empty or repeated
    answers, in order; `None` for another type or a row left with no answer (the row path then names it)."""
    if column.null_count:
        return None
    column = column.combine_chunks()
    if pa.types.is_string(column.type):
        rows, values = np.arange(len(column)), column
    elif pa.types.is_list(column.type) and pa.types.is_string(column.type.value_type):
        rows, values = pc.list_parent_indices(column), pc.list_flatten(column)
    else:
        return None
    values = strip_python_whitespace(values)
    kept = pa.table({"row": rows, "value": values, "position": np.arange(len(values))})
    kept = kept.filter(pc.invert(pc.fill_null(is_python_blank(values), True)))
    first = kept.group_by(["row", "value"], use_threads=False).aggregate([("position", "min")])["position_min"]
    kept = kept.filter(pc.is_in(kept["position"], value_set=first))  # the first of each repeated answer
    counts = np.bincount(kept["row"].to_numpy(), minlength=len(column))
    if (counts == 0).any():
        return None
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(offsets, kept["value"].combine_chunks())
