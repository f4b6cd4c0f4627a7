"""A machine lost mid-run (#32 item 2), two machines of one process stood in for on one host (two_machine_runs.py),
DDP, the NCE LM of two_process_runs.py (dropout off), machine 1 lost at step 3, after the first checkpoint:

- every process of machine 1 SIGKILLed: machine 0 stops in bounded time with one line naming the lost process
  and no traceback of ours; both machines relaunched with the same command resume from the checkpoint and end at the
  uninterrupted run's weights;
- every process of machine 1 frozen (SIGSTOP: its connections stay open, as a machine cut off by the network):
  machine 0 stops after `ddp_timeout`, not torch's 30 minutes, with the same line.
"""

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from recipes.kit.lost_peers import ROLL_CALL_SECONDS
from tests.conftest import REPO
from tests.recipes.kill_machine_worker import kill_machine_command
from tests.recipes.two_machine_runs import TIMEOUT_S, Machine, launch_machines, wait_for_machines
from tests.recipes.two_process_runs import RECIPES, largest_difference

FLAGS = [*RECIPES["nce_lm"][0], "--max_steps", "6", "--save_steps", "2", "--do_eval", "false", "--logging_steps", "1"]
LOST_AT_STEP = 3
# Room for a loaded 2-core host beyond what the code waits: `ddp_timeout` (a collective with a silent peer; a killed
# peer's connections close at once, measured in seconds) and the roll call. A hang guard, not a speed target.
ROOM_S = 180


def machines_until(output_dir: Path, *, lost_at: int, sig: signal.Signals, ddp_timeout: int) -> list[Machine]:
    flags = [*FLAGS, "--ddp_timeout", str(ddp_timeout)]
    command = kill_machine_command("nce_lm", output_dir, lost_at, 1, sig, flags)
    return launch_machines(Path(command[0]), *command[1:], num_processes=2)


def lose_machine_1(output_dir: Path, sig: signal.Signals, ddp_timeout: int) -> tuple[Machine, str, float]:
    """Launches both machines, machine 1 signalled with `sig` at `LOST_AT_STEP`; returns machine 1, machine 0's log
    and the seconds machine 0 ran on after machine 1 was lost. Fails, every process of both machines killed, when
    machine 1 is not lost or machine 0 outlives the bound."""
    machines = machine_0, machine_1 = machines_until(output_dir, lost_at=LOST_AT_STEP, sig=sig, ddp_timeout=ddp_timeout)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not _lost(machine_1):
            assert time.monotonic() < deadline, f"machine 1 was not lost in {TIMEOUT_S} s:\n{machine_1.log()[-3000:]}"
            time.sleep(0.5)
        lost_at, bound = time.monotonic(), ddp_timeout + ROLL_CALL_SECONDS + ROOM_S
        try:
            machine_0.process.wait(timeout=bound)
        except subprocess.TimeoutExpired:  # a hang
            raise AssertionError(f"machine 0 still ran {bound} s after machine 1:\n{machine_0.log()[-3000:]}") from None
        return machine_1, machine_0.log(), time.monotonic() - lost_at
    except BaseException:
        for machine in machines:
            end_machine(machine)
        raise


def _lost(machine: Machine) -> bool:
    try:
        return psutil.Process(machine.process.pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def end_machine(machine: Machine) -> None:
    """SIGKILLs every process of `machine` still there and waits for its launcher."""
    machine.kill()
    machine.process.wait()


def assert_one_line_naming_machine_1(log: str, ddp_timeout: int) -> str:
    """Checks that machine 0's `log` holds the one line naming machine 1, and no traceback of ours; returns the line."""
    line = re.compile(
        rf"^error: process 0 lost contact with process 1 of 2 \(machine 1\): it stopped, or did not answer within "
        rf"ddp_timeout {ddp_timeout} s; the job stops: relaunch every machine with the same command to resume from "
        r"checkpoint-2$",
        re.MULTILINE,
    )
    found = line.findall(log)
    assert len(found) == 1, log[-3000:]
    # No traceback through our code; the launcher's own report of a failed worker (torchrun's) stays.
    assert "[rank0]: Traceback" not in log and f'File "{REPO / "recipes"}' not in log, log[-3000:]
    return found[0]


@pytest.mark.slow
def test_a_machine_killed_mid_run_stops_the_other_with_one_line_and_a_relaunch_resumes(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    wait_for_machines(machines_until(straight, lost_at=-1, sig=signal.SIGKILL, ddp_timeout=60))

    machine_1, log, stopped_after = lose_machine_1(resumed, signal.SIGKILL, ddp_timeout=60)
    assert machine_1.process.wait(timeout=60) == -signal.SIGKILL, machine_1.log()[-3000:]
    line = assert_one_line_naming_machine_1(log, ddp_timeout=60)
    assert (resumed / "checkpoint-2").is_dir() and not (resumed / "checkpoint-4").exists()
    print(f"machine 0 stopped {stopped_after:.1f} s after machine 1 was killed, printing: {line}")

    logs = wait_for_machines(machines_until(resumed, lost_at=-1, sig=signal.SIGKILL, ddp_timeout=60))
    assert "resuming from" in logs[0] and "checkpoint-2" in logs[0]
    assert json.loads((resumed / "checkpoint-6" / "trainer_state.json").read_text())["global_step"] == 6
    expected, actual = (load_file(folder / "model.safetensors") for folder in (straight, resumed))
    assert expected.keys() == actual.keys()
    for key in expected:  # the same arithmetic in the same order: equal up to float noise
        torch.testing.assert_close(actual[key], expected[key], atol=1e-6, rtol=0, msg=lambda m, key=key: f"{key}: {m}")
    print(f"resumed weights differ from the uninterrupted run's by at most {largest_difference(actual, expected):.1e}")


@pytest.mark.slow
def test_a_frozen_machine_stops_the_other_after_ddp_timeout(tmp_path):
    machine_1, log, stopped_after = lose_machine_1(tmp_path / "run", signal.SIGSTOP, ddp_timeout=20)
    try:
        line = assert_one_line_naming_machine_1(log, ddp_timeout=20)
        assert "Timed out waiting 20000ms" not in log  # gloo's own message stays out too
        print(f"machine 0 stopped {stopped_after:.1f} s after machine 1 froze, printing: {line}")
    finally:
        end_machine(machine_1)
