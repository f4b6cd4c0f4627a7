"""QA rows given as conversations (data/closed_book_qa.py): OpenAI-style `messages` and TRL's `prompt` /
`completion` load as question, single gold answer and the turns before it; malformed turns fail naming file and
line; a conversation's own system turn is kept in its chat prompt; a chat prompt too long for its room loses whole
turns, oldest first, not its opening."""

import json
from pathlib import Path

import pytest

from data.chat_prompts import ChatPrompts
from data.closed_book_qa import has_context_turns, load_qa_dataset
from data.errors import DataError
from data.labels import IGNORE_INDEX
from data.qa_features import qa_training_examples
from tests.chat_families import FAMILIES, family_tokenizer

SYSTEM = {"role": "system", "content": "be brief"}
USER = {"role": "user", "content": "capital of france?"}
ANSWER = {"role": "assistant", "content": " paris "}


def write_rows(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def test_messages_and_prompt_completion_rows_load_as_question_answer_and_turns(tmp_path):
    rows = [
        {"messages": [SYSTEM, USER, ANSWER]},
        {"prompt": "who wrote hamlet?", "completion": "shakespeare"},
        {"prompt": [SYSTEM, USER], "completion": [ANSWER]},
        {"question": "2 plus 2", "answer": ["4", "four"]},
    ]
    loaded = load_qa_dataset(train_file=write_rows(tmp_path / "train.jsonl", rows))["train"].to_list()
    assert loaded == [
        {"question": "capital of france?", "answers": ["paris"], "messages": [SYSTEM, USER]},
        {
            "question": "who wrote hamlet?",
            "answers": ["shakespeare"],
            "messages": [{"role": "user", "content": "who wrote hamlet?"}],
        },
        {"question": "capital of france?", "answers": ["paris"], "messages": [SYSTEM, USER]},
        {"question": "2 plus 2", "answers": ["4", "four"], "messages": None},
    ]


def test_a_test_conversation_that_ends_with_the_users_turn_is_a_question_to_answer(tmp_path):
    test = load_qa_dataset(test_file=write_rows(tmp_path / "test.jsonl", [{"messages": [USER]}, {"prompt": "who?"}]))
    assert test["test"].to_list() == [
        {"question": "capital of france?", "messages": [USER]},
        {"question": "who?", "messages": [{"role": "user", "content": "who?"}]},
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"messages": [USER]}, "the last turn must be the assistant's answer, got a user turn"),
        ({"messages": [{"role": "bot", "content": "hi"}, ANSWER]}, r"messages\[0\] has role 'bot'; the roles are"),
        ({"messages": [{"role": "user", "content": " "}, ANSWER]}, r"messages\[0\] \(user\) has no content"),
        ({"messages": [SYSTEM, ANSWER]}, "the turn before the answer must be the user's question"),
        ({"messages": []}, "messages must be a non-empty list"),
        ({"prompt": "who?"}, "completion must be a non-empty list"),
        ({"prompt": "who?", "completion": [USER]}, "the last turn must be the assistant's answer"),
    ],
)
def test_a_malformed_conversation_fails_naming_file_and_line(tmp_path, row, message):
    path = write_rows(tmp_path / "bad.jsonl", [{"messages": [USER, ANSWER]}, row])
    with pytest.raises(DataError, match=rf"bad\.jsonl, line 2: {message}"):
        load_qa_dataset(train_file=path)


def test_a_conversations_own_system_turn_wins_over_system_prompt():
    prompts = ChatPrompts(family_tokenizer(FAMILIES["qwen2"]), system_prompt="answer briefly")
    own, default = prompts.prompt_texts(["capital of france?"] * 2, [[SYSTEM, USER], None])
    assert own.startswith("<|im_start|>system\nbe brief<|im_end|>") and "answer briefly" not in own
    assert default.startswith("<|im_start|>system\nanswer briefly<|im_end|>\n<|im_start|>user\ncapital of france?")


def test_rows_with_turns_besides_their_question_are_told_apart(tmp_path):
    rows = [{"messages": [USER, ANSWER]}, {"question": "2 plus 2", "answer": "4"}, {"messages": [SYSTEM, USER, ANSWER]}]
    loaded = load_qa_dataset(train_file=write_rows(tmp_path / "train.jsonl", rows))["train"]
    assert has_context_turns(loaded) and not has_context_turns(loaded.select([0, 1]))
    questions = load_qa_dataset(train_file=write_rows(tmp_path / "qa.jsonl", [rows[1]] * 3))["train"]
    assert not has_context_turns(questions)  # no conversation at all: its messages column is all null


HISTORY = [
    SYSTEM,
    {"role": "user", "content": "largest ocean on earth, by area and by depth?"},
    {"role": "assistant", "content": "the pacific"},
    {"role": "user", "content": "and the smallest?"},
    {"role": "assistant", "content": "the arctic"},
    USER,
]


def prompt_of(prompts: ChatPrompts, turns: list[dict]) -> list[int]:
    return prompts.encode_prompts(prompts.rendered([turns]))[0]


@pytest.mark.parametrize("kept", [3, 1, 0], ids=["from-the-second-question", "system-and-question", "question-alone"])
def test_a_long_chat_prompt_drops_its_oldest_turns_not_its_opening(kept):
    prompts = ChatPrompts(family_tokenizer(FAMILIES["llama"]))  # a template without a system turn of its own
    shortened = [SYSTEM, *HISTORY[len(HISTORY) - kept :]] if kept else [USER]
    room = len(prompt_of(prompts, shortened))  # just enough for the shortened conversation
    assert room < len(prompt_of(prompts, HISTORY))
    answer = len(prompts.pair_ids([USER["content"]], ["paris"], [HISTORY])[1][0])

    example = qa_training_examples(
        [USER["content"]], ["paris"], prompts, max_seq_length=room + answer, messages=[HISTORY]
    )
    prompt = [t for t, label in zip(example["input_ids"][0], example["labels"][0]) if label == IGNORE_INDEX]
    assert prompt == prompt_of(prompts, shortened)
    opening = prompts.tokenizer.convert_tokens_to_ids(["<|begin_of_text|>", "<|start_header_id|>"])
    assert prompt[:2] == opening and prompt_of(prompts, HISTORY)[-room:][:2] != opening  # the left cut's began inside
    # generation's prompt for the same room is the prompt trained on
    (text,) = prompts.prompt_texts([USER["content"]], [HISTORY], max_length=room)
    assert prompts.encode_prompts([text])[0] == prompt


def test_a_question_longer_than_the_room_alone_is_cut_on_the_left():
    prompts = ChatPrompts(family_tokenizer(FAMILIES["llama"]))
    question = {"role": "user", "content": " ".join(["which river"] * 30) + "?"}
    ids = prompt_of(prompts, [question])
    example = qa_training_examples(
        [question["content"]], ["the nile"], prompts, max_seq_length=20, messages=[[question]]
    )
    assert len(example["input_ids"][0]) == 20
    prompt = [t for t, label in zip(example["input_ids"][0], example["labels"][0]) if label == IGNORE_INDEX]
    assert prompt == ids[-len(prompt) :]  # the end of the question's turn and the assistant's header
