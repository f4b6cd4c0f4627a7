"""The same command twice gives the same bytes: every recipe's tiny.yaml (shortened, its own tokenizer trained as
shipped), run in fresh processes on this machine, writes the same weights, tokenizer, card, predictions and
metrics (timings aside).

Three runs per recipe, each a fresh `python recipes/<task>/train.py` (one process, as `accelerate launch` starts
it, without the launcher's second interpreter) with its own `PYTHONHASHSEED`, on two threads, with the same relative
`--output_dir` in a folder of its own (paths written into the files then match):
- `first` and `fresh` start from empty caches (`FINETUNE_RECIPES_CACHE`): each trains its tokenizer and
  tokenises the data itself, so anything left to hash order, the clock or thread timing differs between them;
- `repeat` reruns `first`'s command with `first`'s cache, as a user's second run does: tokenizer, rows and
  features come from the cache, so any state that only the first run's tokenising sets shows here.

No tolerance: bytes are compared. Files whose bytes differ are opened to name what differs (tensors with the
largest difference, JSON keys with both values). Not compared: timings (`*_runtime`, `*_per_second` keys),
`training_args.bin` (pickled arguments) and the checkpoints inside the folder.
"""

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]

# Flags that cut each tiny.yaml to a few steps and a short evaluation; enough for a difference to show in the
# last bits of the weights after the first step, and in the vocabulary before any.
SHORTER = {
    "sentiment": ["--max_train_samples", "64", "--num_train_epochs", "1", "--max_eval_samples", "32"],
    "closed_book_qa": ["--max_train_samples", "32", "--num_train_epochs", "1", "--max_eval_samples", "8"],
    "nce_lm": ["--max_steps", "4"],
    "transformer_xl": ["--max_steps", "4"],
}
TIMING_KEY = re.compile(r"(_runtime|_per_second)$")
NOT_COMPARED = {"training_args.bin"}


def run_tiny(task: str, workdir: Path, *, cache: Path, hash_seed: int) -> Path:
    """Runs `task`'s shortened tiny.yaml in a fresh process started in `workdir` with `cache` as the recipes'
    cache; returns its output folder."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(REPO / "recipes" / task / "train.py"),
        str(REPO / "recipes" / task / "configs" / "tiny.yaml"),
        "--output_dir",
        "out",
        *SHORTER[task],
    ]
    env = {
        **os.environ,
        "FINETUNE_RECIPES_CACHE": str(cache),
        "PYTHONHASHSEED": str(hash_seed),
        # Two threads, as on any multi-core machine (accelerate launch alone sets one): a kernel whose result
        # depends on how threads interleave shows only with several. Two runs at once share two cores, so the
        # threads wait asleep rather than spinning.
        "OMP_NUM_THREADS": "2",
        "OMP_WAIT_POLICY": "PASSIVE",
        "CUDA_VISIBLE_DEVICES": "",
    }
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"{task} run in {workdir} failed:\n{(result.stdout + result.stderr)[-4000:]}")
    return workdir / "out"


def differences(first: Path, second: Path) -> list[str]:
    """What differs between two output folders, one line per file: the top-level files (not `NOT_COMPARED`)."""
    names = sorted({p.name for p in (*first.iterdir(), *second.iterdir()) if p.is_file()} - NOT_COMPARED)
    found = []
    for name in names:
        a, b = first / name, second / name
        if not (a.is_file() and b.is_file()):
            found.append(f"{name}: only in {a.parent if a.is_file() else b.parent}")
        elif name.endswith(".json"):
            found += [f"{name}: {line}" for line in _json_differences(a, b)]
        elif a.read_bytes() != b.read_bytes():
            found.append(f"{name}: {_tensor_differences(a, b) if name.endswith('.safetensors') else _first_line(a, b)}")
    return found


def _json_differences(a: Path, b: Path, shown: int = 5) -> list[str]:
    """The keys (as paths, `log_history[3].loss`) whose values differ, timing keys left out; the first `shown`."""
    flat_a, flat_b = _flatten(json.loads(a.read_text())), _flatten(json.loads(b.read_text()))
    keys = sorted(key for key in flat_a.keys() | flat_b.keys() if flat_a.get(key, _ABSENT) != flat_b.get(key, _ABSENT))
    lines = [f"{key}: {flat_a.get(key, _ABSENT)!r} vs {flat_b.get(key, _ABSENT)!r}" for key in keys[:shown]]
    return lines + ([f"... and {len(keys) - shown} more keys"] if len(keys) > shown else [])


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()


def _flatten(value: object, path: str = "") -> dict[str, object]:
    """`{"a": {"b": [1, 2]}}` -> `{"a.b[0]": 1, "a.b[1]": 2}`, timing keys left out; an empty dict or list is a leaf."""
    if isinstance(value, dict) and value:
        children = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items() if not TIMING_KEY.search(str(k))]
    elif isinstance(value, list) and value:
        children = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    else:
        return {path: value}
    return {key: leaf for child_path, child in children for key, leaf in _flatten(child, child_path).items()}


def _first_line(a: Path, b: Path) -> str:
    """The first line that differs between two files, with its number."""
    lines_a, lines_b = a.read_bytes().splitlines(), b.read_bytes().splitlines()
    number = next((i for i, (x, y) in enumerate(zip(lines_a, lines_b)) if x != y), min(len(lines_a), len(lines_b)))
    line_a, line_b = (lines[number] if number < len(lines) else b"(end of file)" for lines in (lines_a, lines_b))
    return f"line {number + 1}: {line_a[:120]!r} vs {line_b[:120]!r}"


def _tensor_differences(a: Path, b: Path, shown: int = 3) -> str:
    """The tensors that differ, largest absolute difference first (the first `shown`)."""
    tensors_a, tensors_b = load_file(a), load_file(b)
    if tensors_a.keys() != tensors_b.keys():
        return f"tensor names differ: {sorted(tensors_a.keys() ^ tensors_b.keys())}"
    gaps = []
    for name in sorted(tensors_a):
        x, y = tensors_a[name], tensors_b[name]
        if x.shape != y.shape or x.dtype != y.dtype:
            gaps.append((float("inf"), f"{name} {tuple(x.shape)} {x.dtype} vs {tuple(y.shape)} {y.dtype}"))
        elif not torch.equal(x, y):
            gap = (x.double() - y.double()).abs().max().item()
            gaps.append((gap, f"{name} max |diff| {gap:.3g}"))
    gaps.sort(key=lambda gap: -gap[0])
    listed = "; ".join(text for _, text in gaps[:shown])
    return f"{len(gaps)} of {len(tensors_a)} tensors differ: {listed}" if gaps else "same tensors, other bytes"


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(SHORTER))
def test_the_same_command_twice_writes_the_same_bytes(task, tmp_path):
    with ThreadPoolExecutor(max_workers=2) as pool:  # the two cold runs at once
        first, fresh = pool.map(
            lambda name, seed: run_tiny(task, tmp_path / name, cache=tmp_path / f"cache-{name}", hash_seed=seed),
            ("first", "fresh"),
            (1, 2),
        )
    repeat = run_tiny(task, tmp_path / "repeat", cache=tmp_path / "cache-first", hash_seed=3)
    found = {
        "fresh cache": differences(first, fresh),
        "the first run's cache": differences(first, repeat),
    }
    report = "\n".join(f"{task}, a second run with {how}: {line}" for how, lines in found.items() for line in lines)
    assert not report, "\n" + report
