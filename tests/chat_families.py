"""Chat families for the tests, each a tiny config builder (tests/tiny_models.py), a BPE tokenizer trained on the
sample QA data with the family's special tokens, and a chat template shaped like the family's: written here, short,
not copied from the real ones. `family_tokenizer(FAMILIES[name])` builds the tokenizer."""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from transformers import Gemma2Config, LlamaConfig, Phi3Config, PretrainedConfig, PreTrainedTokenizerFast, Qwen2Config

from data.tokenizers import train_tokenizer
from tests.tiny_models import decoder_config, gpt2_config

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "closed_book_qa"

# Each template renders the conversation, and with `add_generation_prompt` the assistant's header.
LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
QWEN2_TEMPLATE = (  # a default system turn; a newline after each end of turn
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PHI3_TEMPLATE = (  # a conversation without a generation prompt ends with EOS after the last end of turn
    "{% set tags = {'system': '<|system|>', 'user': '<|user|>', 'assistant': '<|assistant|>'} %}"
    "{% for m in messages %}{{ tags[m['role']] + '\n' + m['content'] + '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% else %}{{ eos_token }}{% endif %}"
)
GEMMA2_TEMPLATE = (  # the assistant is the "model"
    "{{ bos_token }}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
GPT2_TEMPLATE = (  # plain-text roles; the assistant's turn ends with GPT-2's one special token
    "{% for m in messages %}{{ m['role'] + ':\n' + m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant:\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Family:
    """A chat family: its tiny config builder, chat template, EOS, the token that ends the assistant's turn (EOS
    when not given), BOS and padding token when it has them."""

    config: Callable[..., PretrainedConfig]
    template: str
    eos: str
    end_of_turn: str | None = None
    bos: str | None = None
    pad: str | None = None

    def special_tokens(self) -> list[str]:
        """The special tokens its tokenizer needs: the ones named, and those its template writes."""
        named = [token for token in (self.bos, self.eos, self.pad, self.end_of_turn) if token]
        return sorted({*named, *re.findall(r"<\|?[a-z_]+\|?>", self.template)})


FAMILIES = {
    "llama": Family(partial(decoder_config, LlamaConfig), LLAMA_TEMPLATE, eos="<|eot_id|>", bos="<|begin_of_text|>"),
    "qwen2": Family(partial(decoder_config, Qwen2Config), QWEN2_TEMPLATE, eos="<|im_end|>", pad="<|endoftext|>"),
    "phi3": Family(partial(decoder_config, Phi3Config), PHI3_TEMPLATE, "<|endoftext|>", "<|end|>", pad="<|endoftext|>"),
    "gemma2": Family(
        partial(decoder_config, Gemma2Config), GEMMA2_TEMPLATE, "<eos>", "<end_of_turn>", "<bos>", "<pad>"
    ),
    "gpt2": Family(gpt2_config, GPT2_TEMPLATE, eos="<|endoftext|>", bos="<|endoftext|>"),
}


def sample_rows(split: str) -> list[dict]:
    return [json.loads(line) for line in (SAMPLES / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def family_tokenizer(family: Family) -> PreTrainedTokenizerFast:
    """Byte-level BPE (400) trained on the sample questions and answers, with the family's special tokens, its
    BOS / EOS / padding tokens and its chat template."""
    texts = [row["question"] + " " + " ".join(row["answer"]) for row in sample_rows("train")]
    tokenizer = train_tokenizer(texts, kind="bpe", vocab_size=400)
    tokenizer.add_tokens(family.special_tokens(), special_tokens=True)
    tokenizer.bos_token = family.bos
    tokenizer.eos_token = family.eos
    tokenizer.pad_token = family.pad
    tokenizer.chat_template = family.template
    return tokenizer
