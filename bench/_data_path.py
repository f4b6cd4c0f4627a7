"""The data-path part shared by `bench/sentiment.py` and `bench/closed_book_qa.py` (`--parts data`).

One recipe's `configs/tiny.yaml` on a large training file, to the end of 2 steps, each run in a fresh process
timed from start to exit, which records its own peak RSS (`getrusage` ru_maxrss) and CPU seconds. Runs: this
checkout with an empty cache (first), again with that cache and a new `output_dir` (repeat), and the baseline:
the files of `--baseline_commit` (default `BASELINE_COMMIT`, the last commit before the Arrow path: every row a
Python dict, `Dataset.from_list`, tokenised in memory on every run) unpacked with `git archive`, on
`--list_rows` rows (default all; lower it if that path does not fit in memory), next to this checkout's first
run on the same rows. Targets (issue #21, at 5M sentiment rows / 2M questions): first run <= 120 s and <= 3 GB
peak RSS, repeat run <= 20 s and >= 10x faster than the first, peak RSS <= 0.5x the baseline's.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _cli import met
from _machine import machine_line

REPO = Path(__file__).resolve().parents[1]
#: "Fused linear cross-entropy: a block's scores are freed ...": main just before the Arrow data path landed.
BASELINE_COMMIT = "a25df2f"
TARGETS = {"first_s": 120.0, "first_rss_gb": 3.0, "repeat_s": 20.0, "speedup": 10.0, "rss_ratio": 0.5}

#: A recipe run in a fresh interpreter: `python -c CHILD report.json train.py args...`; writes the peak RSS of the
#: largest of its processes (itself or a `preprocessing_num_workers` worker) and the CPU seconds of all of them.
CHILD = """
import json, resource, runpy, sys
report, recipe, *argv = sys.argv[1:]
sys.argv = [recipe, *argv]
runpy.run_path(recipe, run_name="__main__")
usage, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
peak_gb = max(usage.ru_maxrss, workers.ru_maxrss) / 2**20  # the largest process: this one or a map worker
cpu_s = usage.ru_utime + usage.ru_stime + workers.ru_utime + workers.ru_stime
json.dump({"peak_rss_gb": peak_gb, "cpu_s": cpu_s}, open(report, "w"))
"""


def add_data_flags(parser: argparse.ArgumentParser, *, rows_flag: str, rows: int, what: str) -> None:
    """`rows_flag` (the size of the training file), `--list_rows` and `--baseline_commit`."""
    parser.add_argument(rows_flag, type=int, default=rows, help=f"(data) {what} in the training file")
    parser.add_argument("--list_rows", type=int, default=None, help=f"(data) {what} for the baseline (default all)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count(),
        help="(data) `--preprocessing_num_workers` of this checkout's runs (default: the CPU count; the baseline's "
        "path has no such option)",
    )
    parser.add_argument(
        "--baseline_commit",
        default=BASELINE_COMMIT,
        help="(data) the commit whose data path is the baseline (default: the last one before the Arrow path)",
    )


def write_repeated_lines(source: Path, path: Path, rows: int, *, header: bool) -> None:
    """`rows` data lines of `source` (after its header line when `header`) in order, from the top again when
    they run out, into `path` (with the same header)."""
    with open(source, encoding="utf-8") as f:
        first = f.readline() if header else ""
        lines = [line if line.endswith("\n") else line + "\n" for line in f if line.strip()]
    with open(path, "w", encoding="utf-8") as f:
        f.write(first)
        f.writelines(itertools.islice(itertools.cycle(lines), rows))


def baseline_code(work: Path, commit: str) -> Path:
    """The files of `commit` (`git archive`), unpacked into `work/baseline`."""
    folder = work / "baseline"
    folder.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def recipe_run(code: Path, task: str, argv: list[str], *, cache: Path, work: Path) -> dict:
    """The recipe `task` of `code` (a checkout) on its `configs/tiny.yaml` plus `argv`, to the end of 2 steps, in
    a fresh process: wall seconds, its peak RSS and CPU seconds."""
    output_dir, report = Path(tempfile.mkdtemp(dir=work, prefix="out-")), work / "report.json"
    recipe = code / "recipes" / task / "train.py"
    argv = [str(recipe.parent / "configs/tiny.yaml"), *argv, "--max_steps", "2", "--output_dir", str(output_dir)]
    argv += ["--disable_tqdm", "true", "--use_cpu", "true"]
    env = {**os.environ, "PYTHONPATH": str(code), "FINETUNE_RECIPES_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(report), str(recipe), *argv], cwd=code, env=env, capture_output=True
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"the {task} recipe of {code} failed:\n{result.stderr.decode()[-4000:]}")
    return {"wall_s": wall, **json.loads(report.read_text())}


def compare_data_paths(
    args: argparse.Namespace,
    *,
    task: str,
    rows: int,
    write_file: Callable[[Path, int], None],
    suffix: str,
    argv: list[str],
    source: str,
) -> None:
    """Writes the training files (`write_file(path, rows)`), runs the first, repeat and baseline runs of `task`
    with `argv` plus `--train_file` and prints the table; `source` says where the rows came from."""
    list_rows = args.list_rows or rows
    with tempfile.TemporaryDirectory(prefix=f"bench_{task}_data_") as folder:
        work = Path(folder)
        files = {n: work / f"train_{n}{suffix}" for n in {rows, list_rows}}
        for n, path in files.items():
            write_file(path, n)

        def run(code: Path, n: int, cache: str, *flags: str) -> dict:
            flags = [*argv, *flags, "--train_file", str(files[n])]
            return recipe_run(code, task, flags, cache=work / cache, work=work)

        workers = ["--preprocessing_num_workers", str(args.workers)]
        first = run(REPO, rows, "cache", *workers)
        repeat = run(REPO, rows, "cache", *workers)
        baseline = run(baseline_code(work, args.baseline_commit), list_rows, "cache-baseline")
        same_rows = first if list_rows == rows else run(REPO, list_rows, "cache-small", *workers)
    print(f"# {task} data path\n\n{machine_line()}; 1-minute load average {os.getloadavg()[0]:.1f}\n")
    print(f"`{' '.join(sys.argv)}`\n\n{task} tiny.yaml to the end of 2 steps, 1 process, {source}; each run a fresh")
    print(f"process timed from start to exit; {rows:,} rows (baseline {args.baseline_commit}: {list_rows:,});")
    print(f"this checkout with `--preprocessing_num_workers {args.workers}`, the baseline in one process\n")
    print_table(rows, list_rows, first, repeat, baseline, same_rows, args.baseline_commit)


def print_table(
    rows: int, list_rows: int, first: dict, repeat: dict, baseline: dict, same_rows: dict, commit: str
) -> None:
    t = TARGETS
    print("| run | rows | wall s | CPU s | peak RSS GB | target | met |\n|---|---|---|---|---|---|---|")
    first_ok = first["wall_s"] <= t["first_s"] and first["peak_rss_gb"] <= t["first_rss_gb"]
    first_target, repeat_target = f"<= {t['first_s']:.0f} s, <= {t['first_rss_gb']:.0f} GB", f"<= {t['repeat_s']:.0f} s"
    lines = [
        ("Arrow path, empty cache", rows, first, first_target, first_ok),
        ("Arrow path, repeat (cache)", rows, repeat, repeat_target, repeat["wall_s"] <= t["repeat_s"]),
        (f"baseline {commit} (from_list)", list_rows, baseline, "", None),
    ]
    if list_rows != rows:
        lines.append(("Arrow path, empty cache", list_rows, same_rows, "", None))
    for name, n, run, target, ok in lines:
        verdict = "" if ok is None else met(ok)
        print(
            f"| {name} | {n:,} | {run['wall_s']:.1f} | {run['cpu_s']:.0f} | {run['peak_rss_gb']:.2f} "
            f"| {target} | {verdict} |"
        )
    speedup, rss_ratio = first["wall_s"] / repeat["wall_s"], same_rows["peak_rss_gb"] / baseline["peak_rss_gb"]
    verdict = met(speedup >= t["speedup"])
    print(f"\nrepeat run {speedup:.1f}x faster than the first (target >= {t['speedup']:.0f}x: {verdict})")
    print(
        f"on {list_rows:,} rows, Arrow path / baseline: peak RSS {rss_ratio:.2f}x (target <= {t['rss_ratio']}: "
        f"{met(rss_ratio <= t['rss_ratio'])}), wall {same_rows['wall_s'] / baseline['wall_s']:.2f}x"
    )
