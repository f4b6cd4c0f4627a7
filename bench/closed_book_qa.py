"""Claim: the batched generation evaluator answers questions >= 5x faster at batch 32 than one at a time.

    python bench/closed_book_qa.py [--num_questions 128] [--batch_sizes 1 8 32]

Both sides run the evaluator's own `generate_answers` (left-padded prompts, greedy, stop at EOS or newline)
with the same randomly initialised GPT-2 built from a config (6 layers, 256 hidden by default) and a BPE
tokenizer trained on the questions. The questions are NQ-open's (EfficientQA dev) from `../shared/data/nq_open`
when present, else the project's sample questions (repeated to `--num_questions`). An untrained model
rarely emits EOS or a newline, so nearly every answer runs the full `--max_new_tokens` on both sides.
Prints a Markdown table: questions per second, batched vs one at a time, and the ratio.
"""

import argparse
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from data.closed_book_qa import load_qa_dataset
from data.qa_features import DEFAULT_PROMPT_TEMPLATE
from data.tokenizers import train_tokenizer
from recipes.closed_book_qa.generation_eval import answer_stop_ids, generate_answers
from recipes.generation import GenerationArguments

NQ_OPEN = Path(__file__).resolve().parents[1].parent / "shared/data/nq_open"
SAMPLES = Path(__file__).resolve().parents[1] / "data/samples/closed_book_qa"


def load_questions(num_questions: int) -> tuple[list[str], str]:
    nq_dev = NQ_OPEN / "NQ-open.efficientqa.dev.1.1.jsonl"
    source = nq_dev if nq_dev.is_file() else SAMPLES / "validation.jsonl"
    questions = list(load_qa_dataset(validation_file=str(source))["validation"]["question"])
    return (questions * (num_questions // len(questions) + 1))[:num_questions], source.name


def questions_per_second(model, tokenizer, questions: list[str], batch_size: int, generation_config) -> float:
    kwargs = {"template": DEFAULT_PROMPT_TEMPLATE, "max_prompt_length": 64, "generation_config": generation_config}
    generate_answers(model, tokenizer, questions[:batch_size], **kwargs)  # warm-up
    start = time.perf_counter()
    for i in range(0, len(questions), batch_size):
        generate_answers(model, tokenizer, questions[i : i + batch_size], **kwargs)
    return len(questions) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_questions", type=int, default=128)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--n_layer", type=int, default=6)
    parser.add_argument("--n_embd", type=int, default=256)
    parser.add_argument("--max_new_tokens", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    questions, source = load_questions(args.num_questions)
    texts = [DEFAULT_PROMPT_TEMPLATE.format(question=q) for q in questions]
    tokenizer = train_tokenizer(texts, kind="bpe", vocab_size=2000)
    tokenizer.pad_token = tokenizer.eos_token
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=args.n_layer,
        n_embd=args.n_embd,
        n_head=8,
        n_positions=128,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config).eval()
    generation_config = GenerationArguments(max_new_tokens=args.max_new_tokens).generation_config(
        tokenizer, eos_token_id=answer_stop_ids(tokenizer)
    )

    one_at_a_time = questions_per_second(model, tokenizer, questions, 1, generation_config)
    print(
        f"\n{len(questions)} questions from {source}; GPT-2 {args.n_layer} layers x {args.n_embd}, "
        f"{args.max_new_tokens} new tokens, greedy, {torch.get_num_threads()} threads\n"
    )
    print("| batch size | batched (questions/s) | one at a time (questions/s) | speed-up |\n|---|---|---|---|")
    for batch_size in args.batch_sizes:
        batched = questions_per_second(model, tokenizer, questions, batch_size, generation_config)
        print(f"| {batch_size} | {batched:.1f} | {one_at_a_time:.1f} | {batched / one_at_a_time:.1f}x |")


if __name__ == "__main__":
    main()
