"""The Transformer-XL recipe: ordered streams and memory across steps, on two real processes."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("stream_continuity_worker.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_processes(script: Path, *args: str) -> None:
    # `--multi_gpu` (gloo on CPU), not `--cpu`: the latter silently starts a single process.
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), str(script), *args,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("accumulation", [1, 3])
def test_each_rank_continues_its_own_streams_and_memory_across_steps(tmp_path, accumulation):
    launch_two_processes(WORKER, str(tmp_path), str(accumulation))
    reports = [json.loads((tmp_path / f"calls_rank{rank}.json").read_text()) for rank in range(2)]
    first_ids = []
    for report in reports:
        assert report["world_size"] == 2
        calls = report["calls"]
        assert len(calls) == 5 * accumulation  # one forward per micro-batch
        assert calls[0]["mems_in"] is None  # streams start with no memory
        for before, after in zip(calls, calls[1:]):
            assert after["first"] == [last + 1 for last in before["last"]]  # row r continues row r
            assert after["mems_in"] == before["mems_out"]  # the memory returned is the memory passed on
        assert not any(call["mems_out_requires_grad"] for call in calls)
        first_ids.append({i for call in calls for i in call["first"]})
    assert max(first_ids[0]) < 500 <= min(first_ids[1])  # rank 0 owns the first half of the streams
