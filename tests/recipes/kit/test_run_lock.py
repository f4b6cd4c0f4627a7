"""One run per `output_dir` at a time (`recipes.kit.run_lock`), with real processes: a second run started while the
first runs is refused in one line naming it; a lock left by a killed run is taken over; the lock goes at the end.
The lock of another machine of the same run (`save_on_each_node` on a shared folder) is named as such."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from recipes.kit.errors import ConfigError
from recipes.kit.run_lock import LOCK_NAME, take_lock
from tests.recipes.kill_worker import kill_worker_command

REPO = Path(__file__).resolve().parents[3]
TRAIN_PY = REPO / "recipes" / "transformer_xl" / "train.py"
# The tiny Transformer-XL, two steps, no evaluation, nothing saved but the final model.
RUN = [
    str(TRAIN_PY),
    str(REPO / "recipes" / "transformer_xl" / "configs" / "tiny.yaml"),
    "--max_steps",
    "2",
    "--do_eval",
    "false",
    "--save_strategy",
    "no",
    "--disable_tqdm",
    "true",
]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _recipe(output_dir: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, *RUN, "--output_dir", str(output_dir), *flags]
    return subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_second_run_on_a_busy_output_dir_is_refused_naming_the_first(tmp_path):
    output_dir, go = tmp_path / "out", tmp_path / "go"
    worker = REPO / "tests" / "recipes" / "waiting_worker.py"
    with open(tmp_path / "first.log", "w") as log:
        command = [sys.executable, str(worker), str(go), *RUN, "--output_dir", str(output_dir)]
        first = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not (output_dir / LOCK_NAME).exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (output_dir / LOCK_NAME).exists(), (tmp_path / "first.log").read_text()[-3000:]

        second = _recipe(output_dir)
        errors = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
        assert second.returncode == 2 and len(errors) == 1, second.stderr[-3000:]
        assert "Traceback" not in second.stderr, second.stderr[-3000:]
        assert (
            f"output_dir {output_dir} is in use by another run (pid {first.pid} on {socket.gethostname()}"
            in (errors[0])
        )
        go.touch()
        assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    assert (output_dir / "model.safetensors").is_file()  # the first run wrote its model, the second nothing
    assert not (output_dir / LOCK_NAME).exists()  # released at its end


@pytest.mark.slow
def test_a_lock_left_by_a_killed_run_is_taken_over_in_one_line(tmp_path):
    output_dir = tmp_path / "out"
    killed = subprocess.run(
        [sys.executable, *kill_worker_command("transformer_xl", output_dir, 1, RUN[2:])],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    pid = json.loads((output_dir / LOCK_NAME).read_text())["pid"]
    assert not psutil.pid_exists(pid)

    rerun = _recipe(output_dir)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    taken_over = [line for line in rerun.stderr.splitlines() if f"took the lock over from pid {pid}" in line]
    assert len(taken_over) == 1 and "no longer running" in taken_over[0], rerun.stderr[-3000:]
    assert not (output_dir / LOCK_NAME).exists()


@pytest.mark.slow
def test_the_lock_is_released_when_the_run_fails(tmp_path):
    (tmp_path / "three_tokens.txt").write_text("the river\n")
    failed = _recipe(tmp_path / "out", "--train_file", str(tmp_path / "three_tokens.txt"))
    assert failed.returncode == 2 and "three_tokens.txt: 3 tokens" in failed.stderr, failed.stderr[-3000:]
    assert (tmp_path / "out").is_dir() and not (tmp_path / "out" / LOCK_NAME).exists()


@pytest.mark.parametrize("same_run", [True, False])
def test_a_lock_of_another_machine_of_this_run_is_named_as_such(tmp_path, same_run):
    holder = {"run": "token-of-this-run" if same_run else "token-of-another-run", "machine": 0}
    take_lock(tmp_path, run=holder)  # machine 0's main process, a running one (this process)
    with pytest.raises(ConfigError) as refusal:
        take_lock(tmp_path, run={"run": "token-of-this-run", "machine": 1})
    if same_run:
        assert str(refusal.value).startswith(f"output_dir {tmp_path} is shared with machine 0 of this run (on ")
        assert "set save_on_each_node false where the machines share output_dir" in str(refusal.value)
    else:
        assert f"output_dir {tmp_path} is in use by another run (pid {os.getpid()}" in str(refusal.value)
