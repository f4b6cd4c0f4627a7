"""Worker for `test_validation_split.py`, run by `accelerate launch` on 2 processes: each rank parses every
recipe's command line and runs the recipe's own data step with it (`validation_split_percentage` carves the
validation split there), then writes the splits it got; the test computes the same in one process with
`carved_splits`, so both sides run one piece of code. One launch covers every recipe: a launch costs 10-20 s.
Usage: validation_split_worker.py REPORT_DIR COMMAND_LINES.json  (a JSON mapping of recipe -> argv)
Writes REPORT_DIR/rank<k>.json: {"world_size": ..., "splits": {recipe: {split: rows or token ids, in order}}}.
"""

import importlib
import json
import sys
from pathlib import Path

from accelerate import PartialState

from data.closed_book_qa import load_qa_dataset
from data.sentiment import load_sentiment_dataset
from recipes.kit.command_line import parse_config
from recipes.kit.data_steps import load_corpus, load_task_splits, load_tokenizer_and_streams
from recipes.kit.distributed import leave_process_group
from recipes.kit.run_steps import start_run


def carved_splits(task: str, argv: list[str]) -> dict[str, list]:
    """The splits the `# Data` step of `recipes/<task>/train.py` gives for its command line `argv` (the language
    models: the token streams of their `# Tokenizer` step, where the validation tokens are carved), as in `main`."""
    recipe = importlib.import_module(f"recipes.{task}.train")
    parsed = parse_config(*recipe.CONFIG_CLASSES, argv=argv)
    model_args, data_args, training_args = parsed[0], parsed[1], parsed[-1]
    start_run(model_args, training_args)
    if task in ("nce_lm", "transformer_xl"):
        corpus = load_corpus(data_args, training_args)
        kind = getattr(model_args, "tokenizer_kind", "word")  # Transformer-XL: always a word-level vocabulary
        _, streams = load_tokenizer_and_streams(model_args, data_args, corpus, training_args, kind=kind)
        return {split: stream.tolist() for split, stream in streams.items()}
    if task == "sentiment":
        load_task = load_sentiment_dataset
        columns = {"text_column": data_args.text_column, "label_column": data_args.label_column}
        task_arguments = {**columns, "label_names": model_args.class_names}
    else:
        load_task = load_qa_dataset
        task_arguments = {"question_column": data_args.question_column, "answer_column": data_args.answer_column}
    splits = load_task_splits(load_task, data_args, training_args, **task_arguments)
    return {split: rows.to_list() for split, rows in splits.items()}


if __name__ == "__main__":
    report_dir, command_lines = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    splits = {task: carved_splits(task, argv) for task, argv in command_lines.items()}
    state = PartialState()  # the process group the recipes' TrainingArguments started
    report = {"world_size": state.num_processes, "splits": splits}
    (report_dir / f"rank{state.process_index}.json").write_text(json.dumps(report))
    leave_process_group()  # together, so gloo cannot abort a peer still exiting
