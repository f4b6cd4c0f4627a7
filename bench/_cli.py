"""Command-line pieces every bench shares: the --threads and --seed flags, the header, the yes / NO column."""

import argparse
import sys

import torch
from _machine import machine_line


def add_run_flags(parser: argparse.ArgumentParser, *, seed: int = 42) -> None:
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=seed)


def begin(title: str, args: argparse.Namespace) -> None:
    """Sets the thread count and prints the header above the tables: title, machine, the command line."""
    torch.set_num_threads(args.threads)
    print(f"# {title}\n\n{machine_line()}\n\n`{' '.join(sys.argv)}`")


def met(ok: bool) -> str:
    return "yes" if ok else "NO"
