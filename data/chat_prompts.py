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

    def prompt_texts(self, questions: Sequence[str], messages: Sequence[Messages | None] | None = None) -> list[str]:
        conversations = [self.conversation(q, m) for q, m in zip(questions, messages or [None] * len(questions))]
        return self.tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=True)

    def pair_ids(
        self, questions: Sequence[str], answers: Sequence[str], messages: Sequence[Messages | None] | None = None
    ) -> tuple[list[list[int]], list[list[int]]]:
        conversations = [self.conversation(q, m) for q, m in zip(questions, messages or [None] * len(questions))]
        answered = [[*turns, {"role": "assistant", "content": a}] for turns, a in zip(conversations, answers)]
        prompts = self.encode_prompts(self.prompt_texts(questions, messages))
        full = self.encode_prompts(self.tokenizer.apply_chat_template(answered, tokenize=False))
        return prompts, [self.answer_ids(p, f, question) for p, f, question in zip(prompts, full, questions)]

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
        prompt = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
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
        return {"chat_template": self.tokenizer.chat_template, "system_prompt": self.system_prompt}
