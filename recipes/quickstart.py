"""Runs every recipe's `configs/tiny.yaml` offline on CPU, one after another: `python -m recipes.quickstart`.

Each recipe is started exactly as a user would start it (`accelerate launch recipes/<task>/train.py
recipes/<task>/configs/tiny.yaml --output_dir <output_root>/<task>`), with the Hub switched off, and
its final evaluation metrics are printed in one table at the end. A failing recipe stops the run
with its exit code.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parent


def tiny_recipes() -> list[str]:
    """Names of the recipes that ship a `configs/tiny.yaml`, in alphabetical order."""
    return sorted(path.parent.parent.name for path in RECIPES_DIR.glob("*/configs/tiny.yaml"))


def run_recipe(task: str, output_root: Path) -> dict:
    """Launches one recipe's tiny config into `output_root/task` and returns its `eval_results.json`.

    Raises:
        subprocess.CalledProcessError: the recipe failed (its exit code).
    """
    output_dir = output_root / task
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(RECIPES_DIR / task / "train.py"),
        str(RECIPES_DIR / task / "configs" / "tiny.yaml"),
        "--output_dir",
        str(output_dir),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    print(f"\n=== {task}: {' '.join(command[2:])}", flush=True)
    subprocess.run(command, env=env, check=True)
    return json.loads((output_dir / "eval_results.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_root", type=Path, default=Path("outputs/quickstart"))
    parser.add_argument("--only", nargs="*", choices=tiny_recipes(), help="run only these recipes")
    args = parser.parse_args()
    results = {task: run_recipe(task, args.output_root) for task in args.only or tiny_recipes()}
    print("\n| recipe | metric | value |\n|---|---|---|")
    for task, metrics in results.items():
        for name, value in sorted(metrics.items()):
            if isinstance(value, float) and not name.endswith(("runtime", "per_second", "epoch")):
                print(f"| {task} | {name} | {value:.4f} |")


if __name__ == "__main__":
    main()
