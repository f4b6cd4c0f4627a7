"""One clear line per failure a user can fix: what `run_from_command_line` prints instead of a traceback.

A configuration that cannot run (`ConfigError`), bad data (`DataError`), a model, tokenizer or data set
that the Hub cannot give (offline, no network, no such repository or revision) and a checkpoint whose code
may only run with `trust_remote_code` are the user's to fix, and a traceback
through transformers' loaders hides the one line that says how. They become `error: <message>` on stderr
and exit status 2 (argparse's status for a bad command line). Anything else is a bug and keeps its
traceback; `FINETUNE_RECIPES_DEBUG=1` keeps it for these too.
"""

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import huggingface_hub
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from data.errors import DataError

#: Set to 1 to get the full traceback of any failure.
DEBUG_VARIABLE = "FINETUNE_RECIPES_DEBUG"
#: The exit status of a refused run (argparse exits 2 for a bad command line too).
EXIT_STATUS = 2
#: Fields whose value may be a Hub id.
HUB_FIELDS = ("model_name_or_path", "tokenizer_name", "dataset_name")
#: transformers' refusal (`resolve_trust_remote_code`) to run a checkpoint's code without `trust_remote_code`.
REMOTE_CODE_REFUSED = re.compile(r"The repository (?P<repository>\S+) (?:contains|references) custom code")


class ConfigError(ValueError):
    """A recipe configuration that cannot run; the message names the file and the key."""


class CheckpointError(ConfigError):
    """A checkpoint or saved model that this run cannot use; the message names it and what is wrong."""


def debug_requested() -> bool:
    """Whether `FINETUNE_RECIPES_DEBUG` asks for tracebacks."""
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def hub_ids(parsed: Iterable[object]) -> dict[str, str]:
    """`{field: value}` of the parsed arguments' `HUB_FIELDS` whose value is not a path on this machine, and
    `model_revision` when it is not the default branch and a model or tokenizer comes from the Hub."""
    ids = {}
    for args in parsed:
        for field in HUB_FIELDS:
            value = getattr(args, field, None)
            if value and not os.path.exists(value):
                ids[field] = value
        revision = getattr(args, "model_revision", "main")
        if revision != "main" and ids.keys() & {"model_name_or_path", "tokenizer_name"}:
            ids["model_revision"] = revision
    return ids


def user_error_message(error: BaseException, hub_sources: dict[str, str]) -> str | None:
    """The one-line message for an error the user can fix, or None for any other (a bug: keep its traceback).

    Args:
        hub_sources: the run's Hub ids (`hub_ids`), one of which a Hub error is about.
    """
    chain = list(_causes(error))
    refused = next(filter(None, (REMOTE_CODE_REFUSED.search(str(cause)) for cause in chain)), None)
    if refused:
        return (
            f"{refused['repository']} ships its own model code, which transformers does not have: pass "
            "--trust_remote_code true to run it. That runs the Python files of that repository (at model_revision) "
            "on this machine, with your permissions: read them first"
        )
    if isinstance(error, ConfigError | DataError):
        return str(error)
    if not any(_is_hub_error(cause) for cause in chain):
        return None
    text = " ".join(str(cause) for cause in chain)
    # transformers' "couldn't connect" message names no id; datasets' messages and "not a valid model
    # identifier" do. An id named in the messages is the one; else the model and tokenizer ids.
    named = {field: value for field, value in hub_sources.items() if field in HUB_FIELDS and value in text}
    culprits = named or {field: value for field, value in hub_sources.items() if field != "dataset_name"}
    if "model_revision" in hub_sources and culprits.keys() & {"model_name_or_path", "tokenizer_name"}:
        culprits["model_revision"] = hub_sources["model_revision"]  # the revision they were read at
    what = " / ".join(f"{field} {value!r}" for field, value in culprits.items()) or "a Hub id"
    if any(isinstance(cause, RevisionNotFoundError) for cause in chain):
        return f"{what}: the repository has no such revision (branch, tag or commit); check model_revision"
    not_found = (RepositoryNotFoundError, DatasetNotFoundError)
    if any(isinstance(cause, not_found) for cause in chain) or "not a valid model identifier" in text:
        return (
            f"{what}: no such local folder, and no such repository on the Hub (a private or gated one needs "
            "`hf auth login`); check the spelling, or give a local folder"
        )
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return (
            f"{what}: not a local folder and not in the Hub cache, and HF_HUB_OFFLINE is set; give a local "
            "folder (a trained output_dir, or a downloaded copy), or unset HF_HUB_OFFLINE to download it"
        )
    return (
        f"{what}: not a local folder and not in the Hub cache, and the Hub could not be reached; give a local "
        "folder, or check the network (HF_HUB_OFFLINE=1 fails at once instead of retrying for a minute)"
    )


@contextmanager
def naming_hub_id(field: str, value: str | None) -> Iterator[None]:
    """For loads made while the arguments are parsed, before `run_from_command_line` knows the Hub ids: a Hub
    error raised inside becomes a `ConfigError` naming `field` and its `value`; any other error passes unchanged.

    Raises:
        ConfigError: a Hub error (or a refused `trust_remote_code`) inside.
    """
    try:
        yield
    except Exception as error:
        message = user_error_message(error, {field: value} if value else {})
        if message is None or isinstance(error, ConfigError | DataError):
            raise
        raise ConfigError(message) from error


def _causes(error: BaseException) -> Iterable[BaseException]:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _is_hub_error(error: BaseException) -> bool:
    """Raised by huggingface_hub, or by `datasets` when it could not reach the Hub."""
    hub_errors = (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, DatasetNotFoundError)
    return isinstance(error, hub_errors) or (isinstance(error, ConnectionError) and "on the Hub" in str(error))
