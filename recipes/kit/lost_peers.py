"""A process lost mid-run (its machine killed, crashed, frozen or cut off): every other process stops within
`ddp_timeout` seconds with one line that names the lost processes and their machine, instead of a hang or a page of
tracebacks; relaunching every machine with the same command resumes from the last checkpoint that can be read
(`recipes.kit.lifecycle`).

Measured on CPU over gloo (torch 2.13), two machines of one process on one host: with every process of machine 1
SIGKILLed at a training step, machine 0's next collective raised at once (`RuntimeError`: gloo's "Connection closed by
peer"). A peer that is frozen or cut off keeps its connections open, and the collective waits for the process
group's timeout instead; `TrainingArguments` passes `ddp_timeout` to the process group on GPUs but not on CPU
(`use_cpu`), where the group kept torch's default of 30 minutes whatever `ddp_timeout` said. `bound_waits` gives the
group `ddp_timeout` there too. Its default stays transformers' 1800 s, on CPU as well: the processes also wait for
each other while the main one does work alone (tokenising a corpus, writing a checkpoint), and a process that is
only slower than `ddp_timeout` stops the run the same way (the line says "it stopped, or did not answer").

Which processes are lost: gloo's message names an address, not a process, and on one host every address is the
same. So each process that stops on such an error answers a roll call in the launch's rendezvous store (hosted by
the launcher of machine 0, reached at `MASTER_ADDR:MASTER_PORT`); the processes that have not answered within
`ROLL_CALL_SECONDS` are the lost ones. Machines are told apart by the launch's layout: process `r` runs on machine
`r // LOCAL_WORLD_SIZE`. When the store itself cannot be reached, machine 0 (its host) is the one lost.
"""

import datetime
import os
import re
import time
from pathlib import Path

import torch
from transformers import TrainingArguments

from recipes.kit.distributed import machine_of
from recipes.kit.errors import CheckpointError
from recipes.kit.lifecycle import last_readable_checkpoint

#: gloo's messages for a peer whose connection closed, and for a collective that waited past the group's timeout.
LOST_PEER_MESSAGES = re.compile(r"Connection closed by peer|Connection reset by peer|Timed out waiting \d+ms")
#: How long the processes that stopped wait for each other's answer to the roll call.
ROLL_CALL_SECONDS = 10.0


def bound_waits(training_args: TrainingArguments) -> None:
    """Gives a gloo process group `ddp_timeout` as the longest any collective waits (module docstring); no group or
    another backend: nothing to do."""
    if torch.distributed.is_initialized() and torch.distributed.get_backend() == "gloo":
        torch.distributed.group.WORLD.set_timeout(training_args.ddp_timeout_delta)


def is_lost_peer(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is gloo's for a lost peer (`LOST_PEER_MESSAGES`)."""
    while error is not None:
        if isinstance(error, RuntimeError) and LOST_PEER_MESSAGES.search(str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def lost_peer_message(training_args: TrainingArguments) -> str:
    """The one line for a run stopped by a lost process: which processes and machines are lost (a roll call, module
    docstring) and the checkpoint that relaunching every machine resumes from."""
    world, rank = training_args.world_size, training_args.process_index
    answered = roll_call(rank, world)
    if answered is None:
        lost = "machine 0 (it hosts the launch's rendezvous, which no longer answers)"
    elif lost_ranks := [other for other in range(world) if other not in answered]:
        machines = sorted({machine_of(other, world) for other in lost_ranks})
        lost = (
            f"process{'es' if len(lost_ranks) > 1 else ''} {', '.join(map(str, lost_ranks))} of {world} "
            f"(machine{'s' if len(machines) > 1 else ''} {', '.join(map(str, machines))})"
        )
    else:
        lost = f"a process of {world} that stopped and answered too late"
    try:
        checkpoint = last_readable_checkpoint(Path(training_args.output_dir))
    except CheckpointError:
        checkpoint = None
    resume = f"resume from {Path(checkpoint).name}" if checkpoint else "start over (no checkpoint to resume from)"
    return (
        f"process {rank} lost contact with {lost}: it stopped, or did not answer within ddp_timeout "
        f"{training_args.ddp_timeout} s; the job stops: relaunch every machine with the same command to {resume}"
    )


def roll_call(rank: int, world: int) -> set[int] | None:
    """Answers the roll call in the launch's store as `rank`, then waits up to `ROLL_CALL_SECONDS` for the other
    processes of `world`; returns those that answered (`rank` too), or None when the store cannot be reached."""
    prefix = f"finetune_recipes/lost_peers/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    try:
        store = torch.distributed.TCPStore(
            os.environ["MASTER_ADDR"],
            int(os.environ["MASTER_PORT"]),
            is_master=False,
            timeout=datetime.timedelta(seconds=ROLL_CALL_SECONDS),
        )
        store.set(f"{prefix}/{rank}", "here")
    except (KeyError, ValueError, RuntimeError):  # no store address in the environment, or the store is gone
        return None
    answered, deadline = {rank}, time.monotonic() + ROLL_CALL_SECONDS
    while len(answered) < world and time.monotonic() < deadline:
        try:
            answered |= {other for other in range(world) if store.check([f"{prefix}/{other}"])}
        except RuntimeError:  # the store's host left meanwhile: those seen so far
            break
        time.sleep(0.5)
    return answered
