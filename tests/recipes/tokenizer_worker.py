"""Worker for `test_sentiment.py`, run by `accelerate launch` on several processes: the sentiment recipe as
launched from the command line, recording the tokenizer each rank's run got. Writes, per rank,
REPORT_DIR/rank<k>.json with the world size and that rank's vocabulary.
Usage: tokenizer_worker.py REPORT_DIR CONFIG.yaml [--flag value ...]
"""

import json
import sys
from pathlib import Path

import recipes.sentiment.train as recipe
from recipes.kit.command_line import run_from_command_line

report_dir = Path(sys.argv.pop(1))
loaded = []
load_tokenizer = recipe.load_tokenizer


def recording_load_tokenizer(*args, **kwargs):
    loaded.append(load_tokenizer(*args, **kwargs))
    return loaded[-1]


def main_then_report(*args):
    metrics = recipe.main(*args)
    (tokenizer,) = loaded
    training_args = args[-1]
    report = {"world_size": training_args.world_size, "vocab": tokenizer.get_vocab()}
    (report_dir / f"rank{training_args.process_index}.json").write_text(json.dumps(report))
    return metrics


recipe.load_tokenizer = recording_load_tokenizer
run_from_command_line(main_then_report, recipe.CONFIG_CLASSES)
