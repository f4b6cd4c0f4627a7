"""Worker for `test_evaluation_layout.py`, run by `accelerate launch` on 1, 2 or 3 processes: each rank runs every
recipe command line it is given (evaluate-only runs of trained folders, one per evaluation batch size) through
the recipe's own parsing and `main`, in order, then writes the metrics it got. One launch covers every recipe
and batch size: a launch costs 10-20 s, an evaluate-only run of a tiny folder a second or two.
Usage: evaluation_layout_worker.py REPORT_DIR COMMAND_LINES.json  (a JSON mapping of run name -> [recipe, argv])
Writes REPORT_DIR/rank<k>.json: {"world_size": ..., "metrics": {run name: the metrics `main` returned}}.
"""

import importlib
import json
import sys
from pathlib import Path

from accelerate import PartialState

from recipes.kit.command_line import parse_config
from recipes.kit.distributed import leave_process_group


def run(task: str, argv: list[str]) -> dict[str, float]:
    """The metrics of `recipes/<task>/train.py`'s `main` for the command line `argv`."""
    recipe = importlib.import_module(f"recipes.{task}.train")
    return recipe.main(*parse_config(*recipe.CONFIG_CLASSES, argv=argv))


if __name__ == "__main__":
    report_dir, command_lines = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    metrics = {name: run(task, argv) for name, (task, argv) in command_lines.items()}
    state = PartialState()  # the process group the recipes' TrainingArguments started
    report = {"world_size": state.num_processes, "metrics": metrics}
    (report_dir / f"rank{state.process_index}.json").write_text(json.dumps(report))
    leave_process_group()  # together, so gloo cannot abort a peer still exiting
