"""One side of `bench/closed_book_qa.py --parts trl`, run in its own process: a Trainer's training steps.

    python bench/_sft_side.py '<job json>'     # prints one line `RESULT {...}`

The job names the side (`ours`: the QA recipe's `QATrainer`, answer-only head, with the collator and attention the
recipe picks, `training_collator`, or the job's `attention`; or `trl`: TRL's `SFTTrainer` on prompt/completion rows,
with `sft` as extra `SFTConfig` fields), the saved model and tokenizer folders, a jsonl of questions and answers, the
step count, batch size and threads.
Both sides get the same `TrainingArguments` values (fp32 and no gradient checkpointing, both of which TRL's
`SFTConfig` would otherwise turn on; CPU, constant learning rate, rows in file order, no logging or saving) and the
same fused AdamW, its state allocated by a zero step before the memory baseline. Measured: the time between consecutive
`on_step_end` calls (data loading, collation, forward, backward, optimizer step), the examples and answer tokens of
every batch as `compute_loss` sees them (packed rows counted one per restart of `position_ids`), the first step's
loss, and the peak RSS above the RSS once model, optimizer and trainer exist (the
kernel's high-water mark, reset there through `/proc/self/clear_refs`).
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import datasets
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, TrainingArguments

from data.labels import IGNORE_INDEX
from data.qa_features import ANSWER_PREFIX, DEFAULT_PROMPT_TEMPLATE, TemplatePrompts, tokenize_qa_dataset
from recipes.closed_book_qa.answer_loss import QATrainer
from recipes.closed_book_qa.padding_free import training_collator


def resident_mb() -> float:
    """This process's resident set size now, in MB."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> None:
    """Resets the kernel's high-water mark of this process's RSS (`VmHWM`) to the RSS now."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """The high-water mark of this process's RSS (`VmHWM`) since start or the last `reset_peak_rss`, in MB."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def adamw_with_state(model: torch.nn.Module, *, lr: float) -> torch.optim.AdamW:
    """AdamW over `model`'s parameters (no weight decay; fused, as `TrainingArguments`' default `optim`
    `adamw_torch_fused` builds it) whose state is allocated, by a step with zero gradients (which leaves the weights
    as they are), so that a memory baseline taken now includes it."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, fused=True)
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return optimizer


class StepClock(TrainerCallback):
    """The `time.perf_counter()` at the end of every optimizer step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


class BatchCounts:
    """Mixed in before a Trainer: records each training batch's examples, answer tokens and loss."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "position_ids" in inputs and inputs["input_ids"].shape[0] == 1:  # padding-free: rows restart positions
            examples = int((inputs["position_ids"] == 0).sum())
        else:
            examples = inputs["input_ids"].shape[0]
        answer_tokens = int((inputs["labels"][:, 1:] != IGNORE_INDEX).sum())  # the scored (shifted) positions
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self.batch_counts.append({"examples": examples, "answer_tokens": answer_tokens, "loss": float(loss)})
        return loss


def trainer_for(job: dict, model, tokenizer, rows: datasets.Dataset, args: dict, optimizer):
    """The side's trainer: ours (`padding_free` as the recipe's field) or TRL's `SFTTrainer` (`job["sft"]`)."""
    if job["side"] == "ours":
        prompts = TemplatePrompts(tokenizer)
        collator = training_collator(model, tokenizer.pad_token_id, padding_free=job["padding_free"], do_train=True)
        if job.get("attention"):  # instead of the one the recipe picks (sdpa per packed row for padding-free batches)
            model.set_attn_implementation(job["attention"])
        trainer_class = type("CountedQATrainer", (BatchCounts, QATrainer), {})
        return trainer_class(
            model=model,
            args=TrainingArguments(**args),
            train_dataset=tokenize_qa_dataset(rows, prompts, max_seq_length=job["max_length"], all_answers=False),
            data_collator=collator,
            processing_class=tokenizer,
            optimizers=(optimizer, None),
            prompts=prompts,
            max_prompt_length=job["max_length"],
            generation_config=model.generation_config,
        )
    from trl import SFTConfig, SFTTrainer

    texts = {
        "prompt": [DEFAULT_PROMPT_TEMPLATE.format(question=q) for q in rows["question"]],
        "completion": [ANSWER_PREFIX + answers[0] for answers in rows["answers"]],  # TRL appends EOS
    }
    trainer_class = type("CountedSFTTrainer", (BatchCounts, SFTTrainer), {})
    return trainer_class(
        model=model,
        args=SFTConfig(**args, completion_only_loss=True, **job["sft"]),
        train_dataset=datasets.Dataset.from_dict(texts),
        processing_class=tokenizer,
        optimizers=(optimizer, None),
    )


def run_side(job: dict) -> dict:
    """Trains `job["steps"]` steps; returns the step times after the first, the per-batch counts, the first loss,
    the RSS baseline and the peak RSS above it (MB); or `{"refused": message}` when building the trainer raised
    a ValueError (a configuration TRL does not run)."""
    torch.set_num_threads(job["threads"])
    tokenizer = AutoTokenizer.from_pretrained(job["tokenizer"])
    model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=torch.float32).train()
    optimizer = adamw_with_state(model, lr=job["lr"])
    rows = datasets.load_dataset("json", data_files=job["rows"], split="train")
    with tempfile.TemporaryDirectory(prefix="bench_sft_") as output_dir:
        args = {
            "output_dir": output_dir,
            "max_steps": job["steps"],
            "per_device_train_batch_size": job["batch_size"],
            "learning_rate": job["lr"],
            "lr_scheduler_type": "constant",
            "train_sampling_strategy": "sequential",  # the same first batch on every side
            "use_cpu": True,
            "bf16": False,  # fp32 on both sides: TRL's SFTConfig defaults to bf16 (autocast)
            "gradient_checkpointing": False,  # as ours: TRL's SFTConfig defaults to True (slower, less memory)
            "report_to": "none",
            "save_strategy": "no",
            "logging_strategy": "no",
            "disable_tqdm": True,
            "dataloader_num_workers": 0,
            "seed": 0,
        }
        try:
            trainer = trainer_for(job, model, tokenizer, rows, args, optimizer)
        except ValueError as error:  # TRL checks its configuration when the trainer is built
            return {"refused": str(error)}
        trainer.batch_counts = []
        clock = StepClock()
        trainer.add_callback(clock)
        baseline_mb = resident_mb()
        reset_peak_rss()
        trainer.train()
        peak_mb = peak_rss_mb() - baseline_mb
    counts = trainer.batch_counts
    return {
        "times": [end - start for start, end in zip(clock.ends, clock.ends[1:])],
        "examples": [c["examples"] for c in counts[1:]],
        "answer_tokens": [c["answer_tokens"] for c in counts[1:]],
        "first_loss": counts[0]["loss"],
        "first_answer_tokens": counts[0]["answer_tokens"],
        "baseline_mb": baseline_mb,
        "peak_mb": peak_mb,
    }


if __name__ == "__main__":
    print("RESULT", json.dumps(run_side(json.loads(sys.argv[1]))))
