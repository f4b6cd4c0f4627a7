"""`recipes.kit.lost_peers`: which errors mean a lost process, the roll call in a real store, and the line that names
the lost processes and the checkpoint a relaunch resumes from. The whole story, two stand-in machines with one
killed, is tests/recipes/test_lost_machine.py."""

import datetime
import json
import types

import pytest
import torch
from safetensors.torch import save_file
from torch.distributed.elastic.utils.distributed import get_free_port

from recipes.kit import lost_peers
from recipes.kit.lost_peers import is_lost_peer, lost_peer_message, roll_call

# gloo's messages, as torch 2.13 raised them in a two-process run (the address and timeout vary).
CLOSED = "[third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:19177."
TIMED_OUT = "[third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 5000ms for recv operation"


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        (RuntimeError(CLOSED), True),
        (RuntimeError(TIMED_OUT), True),
        (torch.distributed.DistBackendError(CLOSED), True),
        (RuntimeError("Expected all tensors to be on the same device"), False),
        (ValueError(CLOSED), False),  # not raised by torch.distributed
    ],
)
def test_only_gloos_lost_peer_errors_count(error, lost):
    assert is_lost_peer(error) is lost


def test_a_lost_peer_error_is_found_behind_the_error_raised_from_it():
    try:
        try:
            raise RuntimeError(CLOSED)
        except RuntimeError as gloo_error:
            raise KeyError("a later step") from gloo_error
    except KeyError as error:
        assert is_lost_peer(error)
    assert not is_lost_peer(KeyError("a later step"))


@pytest.fixture
def store(monkeypatch):
    """A rendezvous store as a launcher serves it, at `MASTER_ADDR:MASTER_PORT`; a roll call of half a second."""
    port = get_free_port()
    master = torch.distributed.TCPStore("127.0.0.1", port, is_master=True, timeout=datetime.timedelta(seconds=5))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    monkeypatch.setattr(lost_peers, "ROLL_CALL_SECONDS", 0.5)
    return master


def test_the_roll_call_returns_the_processes_that_answered(store):
    store.set("finetune_recipes/lost_peers/0/2", "here")  # process 2 stopped too and answered
    assert roll_call(1, 4) == {1, 2}
    assert roll_call(3, 4) == {1, 2, 3}  # a later caller sees the earlier answers


def test_the_roll_call_without_a_store_says_so(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(get_free_port()))  # nothing listens there
    monkeypatch.setattr(lost_peers, "ROLL_CALL_SECONDS", 0.5)
    assert roll_call(0, 2) is None


def write_checkpoint(folder):
    folder.mkdir(parents=True)
    save_file({"weight": torch.zeros(1)}, folder / "model.safetensors")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": int(folder.name.split("-")[1])}))


def arguments(tmp_path, *, rank=0, world=2):
    return types.SimpleNamespace(process_index=rank, world_size=world, output_dir=str(tmp_path), ddp_timeout=60)


def test_the_line_names_the_lost_process_its_machine_and_the_checkpoint_to_resume(tmp_path, monkeypatch, store):
    write_checkpoint(tmp_path / "checkpoint-2")
    (tmp_path / "checkpoint-4").mkdir()  # being written when the peer was lost: not complete, not resumed
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    store.set("finetune_recipes/lost_peers/0/1", "here")  # machine 0's other process stopped as well
    line = lost_peer_message(arguments(tmp_path, world=4))
    assert line == (
        "process 0 lost contact with processes 2, 3 of 4 (machine 1): it stopped, or did not answer within "
        "ddp_timeout 60 s; the job stops: relaunch every machine with the same command to resume from checkpoint-2"
    )


def test_the_line_before_any_checkpoint_says_the_relaunch_starts_over(tmp_path, monkeypatch, store):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    line = lost_peer_message(arguments(tmp_path, rank=1))
    assert "process 1 lost contact with process 0 of 2 (machine 0)" in line
    assert line.endswith("to start over (no checkpoint to resume from)")


def test_the_line_names_machine_0_when_its_store_is_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(get_free_port()))
    monkeypatch.setattr(lost_peers, "ROLL_CALL_SECONDS", 0.5)
    assert "process 1 lost contact with machine 0 (it hosts" in lost_peer_message(arguments(tmp_path, rank=1))
