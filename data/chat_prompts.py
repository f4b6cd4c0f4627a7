"""QA prompts in the tokenizer's chat template (`prompt_format chat`): the question as the user's turn (after an
optional system prompt, or the row's own conversation), the answer as the assistant's, ended by the template's
end-of-turn token, as a chat-tuned model was trained to be prompted.

The answer's tokens are what the template adds to the prompt when the answer is appended: each conversation is
rendered without the answer (`add_generation_prompt=True`: what the model sees at generation) and with it, and the
prompt's ids must be a prefix of the full ids (a template that rewrites earlier turns, or a tokenizer that merges
across the boundary, is refused, naming the template). The full text goes on after the answer (Qwen's
`<|im_end|>\\n`, Phi-3's `<|end|>\\n<|endoftext|>`); it is cut after the end-of-turn token, the first special
token the template writes after the answer, at which generation stops:

    prompt  "<|im_start|>user\\nwho wrote hamlet<|im_end|>\\n<|im_start|>assistant\\n"   -> labels -100 ... -100
    answer  "william shakespeare" <|im_end|>                                           -> labels = their ids
    cut     "\\n"

A prompt longer than its room (`max_seq_length` beside the answer; generation's prompt length) is shortened by whole
turns, as chat front ends shorten a history, not by its first tokens, which would drop the template's opening (a
BOS, the system turn's header) and start the prompt inside a turn: the oldest turns after the system turn go first
(the kept part opens with a user's turn), then the system turn; the question's own turn always stays, and what still
does not fit (one question longer than the room) is cut on the left as a template prompt is.
"""

from collections.abc import Sequence

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from .errors import DataError
from .qa_features import Messages, QAPrompts

#: The conversation that finds where a template ends the assistant's turn (`ChatPrompts.assistant_turn_end`).
PROBE_QUESTION, PROBE_ANSWER = "what is the probe", "the probe answer"


class ChatPrompts(QAPrompts):
    """`prompt_format chat` with `tokenizer.chat_template` (module docstring); `system_prompt` opens every
    conversation that has no system turn of its own. `template_name` names the template in refusals.

    Raises:
        ValueError: a template that refuses the conversation, or whose assistant turn cannot be cut out as the
            answer and an end-of-turn token.
    """

    add_special_tokens = False  # the template writes them (a BOS)

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, *, system_prompt: str | None = None, template_name: str = ""
    ) -> None:
        super().__init__(tokenizer)
        self.system_prompt = system_prompt
        self.template_name = template_name or f"the chat template of {tokenizer.name_or_path or 'the tokenizer'}"
        try:
            self.after_answer, self.end_of_turn = self.assistant_turn_end()
        except TemplateError as error:  # the template refuses the conversation (Gemma's: a system turn)
            raise ValueError(f"{self.template_name}: {error}") from None

    def conversation(self, question: str, messages: Messages | None) -> Messages:
        """The turns before the answer: `messages`, else the question as the user's turn; with `system_prompt`
        first unless they open with a system turn."""
        turns = list(messages) if messages else [{"role": "user", "content": question}]
        if self.system_prompt and turns[0]["role"] != "system":
            turns.insert(0, {"role": "system", "content": self.system_prompt})
        return turns

    def conversations(self, questions: Sequence[str], messages: Sequence[Messages | None] | None) -> list[Messages]:
        """`conversation` of each row."""
        return [self.conversation(q, m) for q, m in zip(questions, messages or [None] * len(questions), strict=True)]

    def rendered(self, conversations: Sequence[Messages]) -> list[str]:
        """The conversations as prompt texts: the template's turns, then the assistant's header."""
        return self.tokenizer.apply_chat_template(list(conversations), tokenize=False, add_generation_prompt=True)

    def prompt_texts(
        self,
        questions: Sequence[str],
        messages: Sequence[Messages | None] | None = None,
        *,
        max_length: int | None = None,
    ) -> list[str]:
        """The rendered conversations; with `max_length`, those longer shortened by whole turns (module docstring)."""
        conversations = self.conversations(questions, messages)
        texts = self.rendered(conversations)
        if max_length is not None:
            for row, ids in enumerate(self.encode_prompts(texts)):
                if len(ids) > max_length:
                    texts[row] = self.rendered([self.shortened(conversations[row], max_length)])[0]
        return texts

    def pair_ids(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        messages: Sequence[Messages | None] | None = None,
        *,
        max_length: int | None = None,
    ) -> tuple[list[list[int]], list[list[int]]]:
        conversations = self.conversations(questions, messages)
        prompts, answer_ids = self.answered(conversations, answers, questions)
        for row in range(len(conversations) if max_length is not None else 0):
            room = max_length - min(len(answer_ids[row]), max_length - 1)  # the answer is kept whole if it fits
            if len(prompts[row]) > room:
                shortened = self.shortened(conversations[row], room)
                (prompts[row],), (answer_ids[row],) = self.answered(
                    [shortened], answers[row : row + 1], questions[row : row + 1]
                )
        return prompts, answer_ids

    def answered(
        self, conversations: Sequence[Messages], answers: Sequence[str], questions: Sequence[str]
    ) -> tuple[list[list[int]], list[list[int]]]:
        """The prompt ids of `conversations` and the ids of each answer after its prompt (`answer_ids`)."""
        full_texts = [[*turns, {"role": "assistant", "content": a}] for turns, a in zip(conversations, answers)]
        prompts = self.encode_prompts(self.rendered(conversations))
        full = self.encode_prompts(self.tokenizer.apply_chat_template(full_texts, tokenize=False))
        return prompts, [self.answer_ids(p, f, question) for p, f, question in zip(prompts, full, questions)]

    def shortened(self, turns: Messages, room: int) -> Messages:
        """The longest ending of `turns` that opens with a user's turn and, after the system turn, fits in `room`
        prompt tokens (module docstring); else the question's turn alone, without the system turn (cut on the left
        by the caller if even it does not fit)."""
        system, history = (turns[:1], turns[1:]) if turns[0]["role"] == "system" else ([], turns)
        candidates = [
            [*system, *history[start:]] for start in range(1, len(history)) if history[start]["role"] == "user"
        ]
        candidates.append(history[-1:])
        for candidate in candidates:
            if len(self.encode_prompts(self.rendered([candidate]))[0]) <= room:
                return candidate
        return candidates[-1]

    def answer_ids(self, prompt: list[int], full: list[int], question: str) -> list[int]:
        """The ids `full` adds to `prompt` up to the end-of-turn token; a `DataError` naming the template and the
        question when `prompt` is not a prefix of `full` or `full` does not end as the template ends a turn."""
        added = full[len(prompt) :]
        tail = len(added) - len(self.after_answer)
        if full[: len(prompt)] != prompt or tail < 1 or added[tail:] != self.after_answer:
            raise DataError(
                f"{self.template_name}: the prompt of {question!r} is not a token prefix of the conversation with "
                "its answer (a template that rewrites earlier turns, or tokens merged across the boundary)"
            )
        return added[: tail + self.end_of_turn + 1]

    def assistant_turn_end(self) -> tuple[list[int], int]:
        """What the template writes after an answer, as ids, and the position there of the end-of-turn token:
        found by rendering a probe conversation without and with its answer."""
        conversation = self.conversation(PROBE_QUESTION, None)
        prompt = self.rendered([conversation])[0]
        answered = [*conversation, {"role": "assistant", "content": PROBE_ANSWER}]
        full = self.tokenizer.apply_chat_template(answered, tokenize=False)
        start = len(prompt) + full[len(prompt) :].find(PROBE_ANSWER)
        if not full.startswith(prompt) or start < len(prompt):
            raise ValueError(
                f"{self.template_name}: the conversation with an answer does not start with the prompt and then the "
                "answer (the template rewrites earlier turns when the assistant's turn is added)"
            )
        after = self.encode_prompts([full[start + len(PROBE_ANSWER) :]])[0]
        special = {*self.tokenizer.all_special_ids, *self.special_added_ids()}
        end = next((i for i, token in enumerate(after) if token in special), None)
        if end is None:
            raise ValueError(
                f"{self.template_name}: no special token ends the assistant's turn, so generation could not stop "
                f"there (after the answer it writes {full[start + len(PROBE_ANSWER) :]!r})"
            )
        return after, end

    def special_added_ids(self) -> list[int]:
        """The ids of the tokenizer's added tokens marked special (`<|im_end|>`, `<end_of_turn>`)."""
        return [token_id for token_id, token in self.tokenizer.added_tokens_decoder.items() if token.special]

    def stop_ids(self) -> list[int]:
        """The end-of-turn token, and EOS when it is another."""
        end_of_turn = self.after_answer[self.end_of_turn]
        eos = self.tokenizer.eos_token_id
        return [end_of_turn] + ([eos] if eos is not None and eos != end_of_turn else [])

    def clean(self, generated: str) -> str:
        return generated.strip()

    def cache_settings(self) -> dict:
        # "shorten": how a long prompt is shortened (by whole turns since it was named); features cut otherwise differ
        return {"chat_template": self.tokenizer.chat_template, "system_prompt": self.system_prompt, "shorten": "turns"}
