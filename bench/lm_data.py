"""Claim: both language-model recipes prepare a WikiText-103-sized corpus in about a minute and a few GB on this
2-core, 24 GB CPU machine, tokenise it once per machine, and start in seconds once it is cached.

    python bench/lm_data.py                  # about 8 minutes
    python bench/lm_data.py --repeats 5      # smoke run on a 10M-token corpus (the targets are for 50)

(Not `bench/data.py`: run as a script, that file would shadow the `data` package.)

Corpus: WikiText-2's training split (`../shared/data/wikitext2/train.txt`) repeated `--repeats` (50) times
into a temporary folder: 104M tokens with one `<eos>` per line, 540 MB, the size of WikiText-103 (whose
vocabulary, 268k words, is larger than this corpus's 33k).

Targets: each recipe's `configs/tiny.yaml` with `--train_file CORPUS --tokenizer_vocab_size 300000
--max_steps 2`, an empty cache unless said otherwise:
- first run, 1 process, to the end of 2 training steps: <= 90 s and <= 3 GB peak RSS;
- 2 processes (`cpu_multi.yaml`): <= 3 GB peak RSS per process, and one tokenisation;
- a repeat run with a new `output_dir` (the cache of the first run): <= 20 s.

Method: each run is `accelerate launch` of the recipe in a fresh process tree, timed from launch to exit
(imports, tokenizer, tokenisation, model, 2 steps, evaluation on the sample validation file, save). Every
recipe process runs through this script's `--child` mode, which records its own peak RSS (`getrusage`
ru_maxrss: mapped pages of the cache it touched count too), its CPU seconds (user + system: less sensitive
than wall time to other jobs on a shared machine) and the splits it tokenised itself. Today's
path (commit `f768327`, the last before the token cache: `BASELINE_COMMIT`) holds the whole corpus as Python
lists: 180 s and 18.7 GB in one process at full scale (old path), which would not fit beside the other jobs
on this machine, so it runs here on 1/5 of the corpus (`--old_repeats 10`) next to the new path on the
same 1/5: that ratio is measured in this run; the full-scale figures of today's path are quoted.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _data_path import baseline_code
from torch.distributed.elastic.utils.distributed import get_free_port

REPO = Path(__file__).resolve().parents[1]
WIKITEXT2_TRAIN = REPO.parent / "shared/data/wikitext2/train.txt"
RECIPES = {"transformer_xl": REPO / "recipes/transformer_xl", "nce_lm": REPO / "recipes/nce_lm"}
ISSUE_OLD_PATH = {"wall_s": 180.0, "peak_rss_gb": 18.7}  # today's path, full corpus, 1 process (old path)
TARGETS = {"first_wall_s": 90.0, "peak_rss_gb": 3.0, "repeat_wall_s": 20.0}


#: The last commit before the token cache (today's path in the issue that asked for it).
BASELINE_COMMIT = "f768327"


def child(recipe: Path, argv: list[str]) -> None:
    """Runs `recipe` as `__main__` in this process and writes this process's peak RSS and tokenised splits."""
    tokenised = None
    try:
        import data.token_cache as token_cache
    except ImportError:  # today's path: no cache module
        token_cache = None
    if token_cache is not None:
        tokenised = []
        encode = token_cache._encode_batches

        def counting_encode(split, *args, **kwargs):
            tokenised.append(split.name)
            yield from encode(split, *args, **kwargs)

        token_cache._encode_batches = counting_encode
    sys.argv = [str(recipe), *argv]
    try:
        runpy.run_path(str(recipe), run_name="__main__")
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        report = {
            "peak_rss_gb": usage.ru_maxrss / 2**20,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "tokenised": tokenised,
        }
        rank = os.environ.get("RANK", "0")
        Path(os.environ["BENCH_DATA_REPORT"], f"rank{rank}.json").write_text(json.dumps(report))


def launch(task: str, *, code: Path, corpus: Path, cache: Path, work: Path, processes: int = 1) -> dict:
    """One recipe run from `code` (this checkout or today's); returns wall seconds and per-process reports."""
    output_dir = Path(tempfile.mkdtemp(dir=work, prefix=f"{task}-out-"))
    reports = Path(tempfile.mkdtemp(dir=work, prefix="reports-"))
    if processes > 1:
        setup = ["--config_file", str(REPO / "recipes/accelerate_configs/cpu_multi.yaml")]
    else:
        setup = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    recipe = code / RECIPES[task].relative_to(REPO)
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *setup,
        "--num_processes",
        str(processes),
        "--main_process_port",
        str(get_free_port()),
        __file__,
        "--child",
        str(recipe / "train.py"),
        str(recipe / "configs/tiny.yaml"),
        "--train_file",
        str(corpus),
        "--tokenizer_vocab_size",
        "300000",
        "--max_steps",
        "2",
        "--output_dir",
        str(output_dir),
        "--disable_tqdm",
        "true",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(code),
        "FINETUNE_RECIPES_CACHE": str(cache),
        "BENCH_DATA_REPORT": str(reports),
        "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{task} from {code} failed:\n{(result.stdout + result.stderr)[-4000:]}")
    ranks = [json.loads((reports / f"rank{rank}.json").read_text()) for rank in range(processes)]
    return {"wall_s": wall, "ranks": ranks}


def repeated_corpus(path: Path, repeats: int) -> Path:
    text = WIKITEXT2_TRAIN.read_bytes()
    with open(path, "wb") as f:
        for _ in range(repeats):
            f.write(text)
    return path


def row(name: str, run: dict, target: str = "", met: bool | None = None) -> str:
    rss = " / ".join(f"{r['peak_rss_gb']:.2f}" for r in run["ranks"])
    cpu = " / ".join(f"{r['cpu_s']:.0f}" for r in run["ranks"])
    tokenised = " / ".join("-" if r["tokenised"] is None else str(len(r["tokenised"])) for r in run["ranks"])
    verdict = "" if met is None else ("yes" if met else "NO")
    return (
        f"| {name} | {len(run['ranks'])} | {run['wall_s']:.1f} | {cpu} | {rss} | {tokenised} | {target} | {verdict} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50, help="copies of WikiText-2 train in the corpus")
    parser.add_argument("--old_repeats", type=int, default=10, help="copies for the today-vs-new comparison")
    parser.add_argument("--work_dir", type=Path, default=None, help="temporary folder (default: a new one)")
    args = parser.parse_args()
    if not WIKITEXT2_TRAIN.is_file():
        sys.exit(f"{WIKITEXT2_TRAIN} is missing: this bench needs ../shared/data/wikitext2")
    load_at_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-data-", dir=args.work_dir))
    corpus = repeated_corpus(work / f"wikitext2_x{args.repeats}.txt", args.repeats)
    small = repeated_corpus(work / f"wikitext2_x{args.old_repeats}.txt", args.old_repeats)
    print(f"corpus: {corpus.stat().st_size / 1e6:.0f} MB ({args.repeats} x WikiText-2 train); work dir {work}")

    runs = {}
    runs["today, 1/5"] = launch(
        "transformer_xl", code=baseline_code(work, BASELINE_COMMIT), corpus=small, cache=work / "c0", work=work
    )
    runs["new, 1/5"] = launch("transformer_xl", code=REPO, corpus=small, cache=work / "c1", work=work)
    for task in RECIPES:
        cache = work / f"cache-{task}"
        runs[f"{task} first"] = launch(task, code=REPO, corpus=corpus, cache=cache, work=work)
        runs[f"{task} repeat"] = launch(task, code=REPO, corpus=corpus, cache=cache, work=work)
    two = launch("transformer_xl", code=REPO, corpus=corpus, cache=work / "cache-2p", work=work, processes=2)
    runs["transformer_xl first, cpu_multi"] = two

    max_rss = lambda run: max(r["peak_rss_gb"] for r in run["ranks"])  # noqa: E731
    first_target = f"<= {TARGETS['first_wall_s']:.0f} s, <= {TARGETS['peak_rss_gb']:.0f} GB"
    lines = [
        "| run | processes | wall s | CPU s per process | peak RSS GB per process | splits tokenised per process "
        "| target | met |",
        "|---|---|---|---|---|---|---|---|",
        f"| today's path, full corpus (quoted, old path) | 1 | {ISSUE_OLD_PATH['wall_s']:.0f} | - | "
        f"{ISSUE_OLD_PATH['peak_rss_gb']} | - | | |",
        row(f"today's path, Transformer-XL, {args.old_repeats} x (measured)", runs["today, 1/5"]),
        row(f"new path, Transformer-XL, {args.old_repeats} x, empty cache", runs["new, 1/5"]),
    ]
    for task in RECIPES:
        first, repeat = runs[f"{task} first"], runs[f"{task} repeat"]
        first_met = first["wall_s"] <= TARGETS["first_wall_s"] and max_rss(first) <= TARGETS["peak_rss_gb"]
        lines.append(row(f"{task}, empty cache", first, first_target, first_met))
        repeat_target = f"<= {TARGETS['repeat_wall_s']:.0f} s"
        lines.append(
            row(f"{task}, repeat, new output_dir", repeat, repeat_target, repeat["wall_s"] <= TARGETS["repeat_wall_s"])
        )
    tokenisations = sum(len(r["tokenised"]) for r in two["ranks"])
    lines.append(
        row(
            "transformer_xl, empty cache, cpu_multi.yaml",
            two,
            f"<= {TARGETS['peak_rss_gb']:.0f} GB each, one tokenisation per split",
            max_rss(two) <= TARGETS["peak_rss_gb"] and tokenisations == 2,
        )
    )
    old, new = runs["today, 1/5"], runs["new, 1/5"]
    load = f"1-minute load average {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    print(f"\n{platform.machine()}, {os.cpu_count()} cores, {datetime.date.today()}, {load}\n")
    print("\n".join(lines))
    print(
        f"\nToday's path / new path, Transformer-XL on {args.old_repeats} x WikiText-2, measured in this run: wall "
        f"{old['wall_s'] / new['wall_s']:.2f}x, peak RSS {max_rss(old) / max_rss(new):.2f}x."
    )
    if args.repeats == 50:
        first = runs["transformer_xl first"]
        print(
            f"Today's path at full scale (old path) / new path here, Transformer-XL, 1 process: wall "
            f"{ISSUE_OLD_PATH['wall_s'] / first['wall_s']:.2f}x, "
            f"peak RSS {ISSUE_OLD_PATH['peak_rss_gb'] / max_rss(first):.2f}x."
        )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), sys.argv[3:])
    else:
        main()
