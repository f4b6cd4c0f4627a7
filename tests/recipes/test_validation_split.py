"""`validation_split_percentage 10` under `accelerate launch` with 2 processes: every rank's data step carves the
split one process carves, through each recipe's own parsing and data step (`validation_split_worker.py`, launched
once for all recipes): the sentiment and QA rows a seeded tenth of the training file, the language models' tokens
the last tenth of the training stream; floor(n * 10 / 100) held out, the rest kept, the two together the file."""

import json
from pathlib import Path

import pytest

from tests.conftest import accelerate_launch
from tests.recipes.validation_split_worker import carved_splits

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).parent / "validation_split_worker.py"
ROW_TASKS, LM_TASKS = ("sentiment", "closed_book_qa"), ("nce_lm", "transformer_xl")
# 305 rows: floor(305 * 10 / 100) = 30 validation rows (30.5 rounded down), 275 training rows.
SENTIMENT_ROWS = [{"text": f"review {i} was {('dull', 'fine')[i % 2]}", "label": i % 2} for i in range(305)]
# As the QA loader gives them: a question row has no conversation (`messages`: None).
QA_ROWS = [{"question": f"what is {i} plus 1?", "answers": [str(i + 1)], "messages": None} for i in range(305)]
LM_LINES = 300  # lines of the sample corpus: a few thousand tokens


def write_training_files(folder: Path) -> dict[str, Path]:
    """Each recipe's training file, written from `SENTIMENT_ROWS`, `QA_ROWS` and the sample corpus."""
    folder.mkdir()
    sentiment, qa, lm = folder / "sentiment.tsv", folder / "qa.jsonl", folder / "lm.txt"
    sentiment.write_text("".join(["sentence\tlabel\n", *(f"{r['text']}\t{r['label']}\n" for r in SENTIMENT_ROWS)]))
    qa.write_text("".join(json.dumps({"question": r["question"], "answer": r["answers"]}) + "\n" for r in QA_ROWS))
    corpus = (REPO / "data" / "samples" / "lm" / "train.txt").read_text(encoding="utf-8").splitlines()
    lm.write_text("\n".join(corpus[:LM_LINES]) + "\n", encoding="utf-8")
    return {"sentiment": sentiment, "closed_book_qa": qa, "nce_lm": lm, "transformer_xl": lm}


def command_line(task: str, train_file: Path, folder: Path, *flags: str) -> list[str]:
    """The recipe's tiny run on `train_file` alone (the YAML's validation file cleared), writing into `folder`."""
    argv = [str(REPO / "recipes" / task / "configs" / "tiny.yaml"), "--output_dir", str(folder / task)]
    argv += ["--train_file", str(train_file), "--validation_file", "", *flags]
    return argv + (["--token_cache_dir", str(folder / "token_cache")] if task in LM_TASKS else [])


TEN_PERCENT = ["--validation_split_percentage", "10"]


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> tuple[Path, dict[str, Path], list[dict]]:
    """`(folder, training files, per-rank reports)` of one 2-process launch of the worker over every recipe."""
    folder = tmp_path_factory.mktemp("validation-split")
    files = write_training_files(folder / "data")
    command_lines = {task: command_line(task, files[task], folder / "launched", *TEN_PERCENT) for task in files}
    (folder / "command_lines.json").write_text(json.dumps(command_lines))
    accelerate_launch(WORKER, str(folder), str(folder / "command_lines.json"))
    reports = [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert [report["world_size"] for report in reports] == [2, 2]  # really two processes
    return folder, files, reports


@pytest.mark.slow
@pytest.mark.parametrize("task", [*ROW_TASKS, *LM_TASKS])
def test_both_ranks_carve_the_split_one_process_carves(launched, task):
    folder, files, reports = launched
    alone = carved_splits(task, command_line(task, files[task], folder / "alone", *TEN_PERCENT))
    assert reports[0]["splits"][task] == alone
    assert reports[1]["splits"][task] == alone


@pytest.mark.slow
@pytest.mark.parametrize("task", ROW_TASKS)
def test_every_rank_holds_out_a_tenth_of_the_rows_and_trains_on_the_rest(launched, task):
    rows = {"sentiment": SENTIMENT_ROWS, "closed_book_qa": QA_ROWS}[task]
    for report in launched[2]:
        train, validation = report["splits"][task]["train"], report["splits"][task]["validation"]
        held_out = [i for i, row in enumerate(rows) if row in validation]
        assert len(validation) == len(held_out) == 30  # floor(305 * 10 / 100), each a row of the file
        assert validation == [rows[i] for i in held_out]  # in file order
        assert train == [row for i, row in enumerate(rows) if i not in held_out]  # every other row, in file order
        assert held_out != list(range(30)) and held_out != list(range(275, 305))  # drawn, not a slice


@pytest.mark.slow
@pytest.mark.parametrize("task", LM_TASKS)
def test_every_rank_validates_on_the_last_tenth_of_the_training_tokens(launched, task):
    folder, files, reports = launched
    whole = carved_splits(task, command_line(task, files[task], folder / "whole"))["train"]
    tail = len(whole) * 10 // 100
    assert tail > 0
    for report in reports:
        assert report["splits"][task]["validation"] == whole[-tail:]
        assert report["splits"][task]["train"] == whole[:-tail]
