"""Two machines stood in for on one host: one `accelerate launch` per machine, `--num_machines 2 --machine_rank R
--main_process_ip 127.0.0.1 --main_process_port P`, each starting its own processes, which meet over gloo.

accelerate (1.15) hands such a launch to torchrun (`--nnodes 2 --node_rank R`, `--nproc_per_node` = the total
`--num_processes` / 2); the shipped CPU configs say `rdzv_backend: static` and `same_network: true`, so the
processes of both launches rendezvous at 127.0.0.1:P, which machine 0's launch serves. Global ranks 0..n-1 are
machine 0's, n..2n-1 machine 1's, so "process 0 of 2n" is machine 0's main process.

Each launch starts a session of its own (a test may kill one machine, and only it, with `Machine.kill`), writes
its log to a file of its own, and is waited for with a timeout that guards against a hang only
(a rendezvous whose peer never comes waits for ever).
"""

import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil
from torch.distributed.elastic.utils.distributed import get_free_port

from tests.conftest import accelerate_command, launch_environment
from tests.recipes.kill_machine_worker import signal_machine

MACHINES = 2
# A hang guard, not a speed target: a tiny run takes about a minute alone, several on a loaded 2-core host.
TIMEOUT_S = 900


@dataclass
class Machine:
    """One stand-in machine: its `accelerate launch` process (leader of its own process group) and its log."""

    rank: int
    process: subprocess.Popen
    log_file: IO[bytes]

    def log(self) -> str:
        """Everything the machine's processes printed so far (stdout and stderr)."""
        self.log_file.seek(0)
        return self.log_file.read().decode(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends `sig` to every process of this machine still there (launcher, torchrun, workers), none of the
        other's. The process tree, not the process group: torchrun starts each worker in a session of its own."""
        try:
            signal_machine(self.process.pid, sig)
        except psutil.NoSuchProcess:
            pass


def launch_machines(
    script: Path, *args: str, num_processes: int, config_file: str = "cpu_multi.yaml", cwd: Path | None = None
) -> list[Machine]:
    """Starts machine 0 and machine 1 at once, each `accelerate launch --config_file <config_file> script *args`
    with `num_processes // 2` processes, and returns them running (wait with `wait_for_machines`).

    Args:
        num_processes: the processes of both machines together (accelerate's `--num_processes`), even.
        config_file: a config under `recipes/accelerate_configs/` (`cpu_multi.yaml`: DDP; `fsdp_cpu.yaml`: FSDP2).
    """
    if num_processes % MACHINES:
        raise ValueError(f"num_processes={num_processes} does not split over {MACHINES} machines")
    port = get_free_port()
    machines = []
    for rank in range(MACHINES):
        flags = ("--num_machines", str(MACHINES), "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1")
        command = accelerate_command(
            script, *args, num_processes=num_processes, config_file=config_file, port=port, launcher_flags=flags
        )
        log_file = tempfile.TemporaryFile()
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=launch_environment(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: `Machine.kill` reaches this machine only
        )
        machines.append(Machine(rank, process, log_file))
    return machines


def wait_for_machines(machines: list[Machine], *, timeout: float = TIMEOUT_S, check: bool = True) -> list[str]:
    """Waits for every machine to exit and returns their logs (machine 0's first).

    Raises:
        AssertionError: a machine still running after `timeout` seconds in all (every machine is then killed), or,
            when `check`, a machine that exited with a non-zero status; with the tail of each machine's log.
    """
    deadline = time.monotonic() + timeout
    try:
        for machine in machines:
            machine.process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for machine in machines:
            if machine.process.poll() is None:
                machine.kill()
                machine.process.wait()
        raise AssertionError(f"machines still running after {timeout} s (killed):\n{_tails(machines)}") from None
    if check and any(machine.process.returncode != 0 for machine in machines):
        raise AssertionError(f"a machine failed:\n{_tails(machines)}")
    return [machine.log() for machine in machines]


def two_machine_launch(
    script: Path, *args: str, num_processes: int = 2, config_file: str = "cpu_multi.yaml", check: bool = True
) -> str:
    """`launch_machines` then `wait_for_machines`, returning both logs in one string, each under a
    `=== machine R ===` line: `tests.conftest.accelerate_launch`'s signature, so `run_recipe` takes it as `launch`."""
    logs = wait_for_machines(
        launch_machines(script, *args, num_processes=num_processes, config_file=config_file), check=check
    )
    return "".join(f"=== machine {rank} ===\n{log}" for rank, log in enumerate(logs))


def _tails(machines: list[Machine]) -> str:
    return "\n".join(f"=== machine {m.rank} (exit {m.process.returncode}) ===\n{m.log()[-3000:]}" for m in machines)
