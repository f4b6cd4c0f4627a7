"""One run per `output_dir` at a time: two runs writing into one folder would interleave their checkpoints, and
each would resume from (or, with `overwrite_output_dir`, delete) what the other wrote.

The process of a launch that saves (`should_save`: the main one) creates `output_dir/_run.lock` before anything
else, holding its process id, host, start time and command; the launch's other processes wait for it. A second
run finds the lock and is refused, naming the first. The lock is removed when the run ends, also when it fails.
A run killed outright (SIGKILL, an out-of-memory kill) leaves its lock behind: the next run on that host sees
that the process is gone and takes the lock over, saying so in one line. A lock written on another host cannot
be checked from here: the run is refused, naming the file to delete once that run is over. The leading `_` keeps
the file out of `Trainer`'s uploads to the Hub.

With `save_on_each_node` the main process of every machine saves, so each takes the lock of its own `output_dir`.
Where the machines share that folder (one network file system), two machines of one run would write the same files:
the lock then names itself as held by another machine of this run (a token that the run's process 0 draws and
sends to every process, and the machine of the holder), instead of calling it another run.
"""

import datetime
import json
import logging
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import torch
from transformers import TrainingArguments

from recipes.kit.distributed import machine_of
from recipes.kit.errors import ConfigError

logger = logging.getLogger(__name__)

#: The lock's file name in `output_dir`.
LOCK_NAME = "_run.lock"


@contextmanager
def output_dir_lock(training_args: TrainingArguments | None) -> Iterator[None]:
    """Holds the lock of `training_args.output_dir` for the run inside (module docstring); no lock without
    training arguments.

    Raises:
        ConfigError: another run holds the lock (`take_lock`).
    """
    lock = None
    if training_args is not None:
        run = run_of_machines(training_args)
        with training_args.main_process_first(local=training_args.save_on_each_node, desc="output_dir lock"):
            if training_args.should_save:
                lock = take_lock(Path(training_args.output_dir), run=run)
    try:
        yield
    finally:
        if lock is not None:
            lock.unlink(missing_ok=True)


def run_of_machines(training_args: TrainingArguments) -> dict | None:
    """This process's run and machine (`{"run": token, "machine": index}`) where the main process of every machine
    saves (`save_on_each_node` on several processes); None otherwise. Every process must call it: process 0's token
    is broadcast; the machine is `recipes.kit.distributed.machine_of` this process.
    """
    if not (training_args.save_on_each_node and training_args.world_size > 1 and torch.distributed.is_initialized()):
        return None
    token = [uuid.uuid4().hex]
    torch.distributed.broadcast_object_list(token, src=0)
    return {"run": token[0], "machine": machine_of(training_args.process_index, training_args.world_size)}


def take_lock(folder: Path, *, run: dict | None = None) -> Path:
    """Creates `folder/_run.lock` for this process and returns its path, taking over a lock whose process is gone
    from this host (module docstring). `run`: this process's run and machine (`run_of_machines`), written into the
    lock so that another machine of the same run is named as such.

    Raises:
        ConfigError: a lock held by a running process, by one on another host, by another machine of this run, or
            not written by this module, naming the run that holds it and what to do; or other runs taking the lock
            at the same moment.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    mine = folder / f"{LOCK_NAME}.{os.getpid()}"  # written whole, then linked: no run reads a half-written lock
    mine.write_text(json.dumps({**_this_process(), **(run or {})}), encoding="utf-8")
    stale = None
    try:
        for _ in range(3):  # again when the lock vanished or was taken over while we looked
            try:
                os.link(mine, path)
            except FileExistsError:
                holder = _read(path)
            else:
                if stale is not None:
                    logger.warning(
                        "%s: took the lock over from pid %s (started %s), which is no longer running",
                        path,
                        stale.get("pid"),
                        _when(stale),
                    )
                return path
            if holder is None:
                continue
            if run is not None and holder.get("run") == run["run"]:
                raise ConfigError(_shared_by_machines(folder, holder))
            if _is_running(holder) is not False:
                raise ConfigError(_refusal(folder, path, holder))
            if _remove_if_unchanged(path, holder):
                stale = holder
        raise ConfigError(f"{path}: other runs are taking this output_dir at the same moment; give another one")
    finally:
        mine.unlink(missing_ok=True)


def _this_process() -> dict:
    started = psutil.Process().create_time()
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "command": " ".join(sys.argv)}


def _read(path: Path) -> dict | None:
    """The lock's content; None when the file is gone; {} when it is not a lock this module wrote."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        return {}
    return content if isinstance(content, dict) else {}


def _is_running(holder: dict) -> bool | None:
    """Whether the process of a lock still runs: None when that cannot be told here (another host, or no lock
    this module wrote). A process id in use by a process started at another time is not the lock's."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return None
    try:
        return abs(psutil.Process(holder["pid"]).create_time() - holder["started"]) < 1.0
    except psutil.NoSuchProcess:
        return False


def _remove_if_unchanged(path: Path, holder: dict) -> bool:
    """Removes the lock at `path` if it still is `holder`'s. The file is first moved away (one atomic step), so of
    two runs taking over one stale lock only one removes it; a newer lock moved away by mistake is put back."""
    moved = path.with_name(f"{path.name}.stale.{os.getpid()}")
    try:
        os.replace(path, moved)
    except FileNotFoundError:
        return False
    try:
        if _read(moved) == holder:
            return True
        try:
            os.link(moved, path)
        except FileExistsError:
            pass
        return False
    finally:
        moved.unlink(missing_ok=True)


def _refusal(folder: Path, path: Path, holder: dict) -> str:
    if not holder:
        return f"output_dir {folder} is locked by {path}, which is not a lock of these recipes: delete it to use it"
    who = f"pid {holder.get('pid')} on {holder.get('host')}, started {_when(holder)}: {holder.get('command')}"
    if holder.get("host") != socket.gethostname():
        return f"output_dir {folder} is in use by another run ({who}); if that run has ended, delete {path}"
    return f"output_dir {folder} is in use by another run ({who}); wait for it to end, or give another output_dir"


def _shared_by_machines(folder: Path, holder: dict) -> str:
    return (
        f"output_dir {folder} is shared with machine {holder.get('machine')} of this run (on {holder.get('host')}), "
        "whose main process saves there too: with save_on_each_node every machine's main process writes each "
        "checkpoint, so the machines would write the same files; set save_on_each_node false where the machines "
        "share output_dir, or give each machine an output_dir on a disk of its own"
    )


def _when(holder: dict) -> str:
    started = holder.get("started")
    if not isinstance(started, int | float):
        return "at an unknown time"
    return datetime.datetime.fromtimestamp(started).isoformat(sep=" ", timespec="seconds")
