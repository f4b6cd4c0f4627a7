"""Runs that several recipe test modules compare against, launched once per session."""

from pathlib import Path

import pytest
import torch

from tests.conftest import accelerate_launch, shared_tokenizer_args
from tests.recipes.two_process_runs import run_recipe


@pytest.fixture(scope="module")
def one_thread_per_module():
    """One torch thread for the module's tests (`pytestmark = pytest.mark.usefixtures("one_thread_per_module")`):
    tiny models on a shared 2-core machine, where two OpenMP threads fighting another job ran ~50x slower
    (test_nce_lm) and 97 sentences one at a time took 9.7 s instead of 0.4 s (test_evaluation_layout)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def session_tokenizer(tmp_path_factory):
    """`session_tokenizer(task) -> flags`: `shared_tokenizer_args` trained once per session, so runs launched by
    different tests (and `two_process_ddp_run`) load the same vocabulary."""
    flags: dict[str, list[str]] = {}

    def get(task: str) -> list[str]:
        if task not in flags:
            flags[task] = shared_tokenizer_args(task, tmp_path_factory.mktemp(f"tokenizer-{task}"))
        return flags[task]

    return get


@pytest.fixture(scope="session")
def two_process_ddp_run(tmp_path_factory, session_tokenizer):
    """`two_process_ddp_run(task) -> (output_dir, log)`: `run_recipe`'s 2 processes x 4 examples DDP run with
    `session_tokenizer(task)`, launched once per session: test_scale_out.py compares it with one process,
    test_fsdp.py with FSDP. Read it, never write into it."""
    runs: dict[str, tuple[Path, str]] = {}

    def get(task: str) -> tuple[Path, str]:
        if task not in runs:
            output_dir = tmp_path_factory.mktemp(f"ddp-{task}") / "2x4"
            runs[task] = output_dir, run_recipe(accelerate_launch, task, output_dir, 2, session_tokenizer(task))
        return runs[task]

    return get
