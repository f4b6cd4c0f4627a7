"""What a run does with what its `output_dir` already holds, decided once, before any data or model loads.

- `--overwrite_output_dir true`: the folder is emptied and the run starts over.
- A finished run (final model and `trainer_state.json` at the requested `max_steps` / `num_train_epochs`):
  nothing is trained or saved again; the run evaluates / predicts with the folder as saved.
- Otherwise the run resumes from the last checkpoint that can be read (an unreadable one is named and
  skipped), after checking that its model config is the one this run would build.
- A trained model with no checkpoint to continue from is refused: starting over is explicit.
- `--resume_from_checkpoint` picks the checkpoint instead; it must be a folder, checked as above.

A checkpoint of a run on several processes is read only when every process finished writing its own files into it
(`per_process_gaps`): a machine lost while the checkpoint was written can leave it with the weights and
`trainer_state.json` of process 0 but without the RNG state or noise generator of the lost processes, and resuming
from it would silently draw other random numbers than the uninterrupted run. How many processes wrote a checkpoint
(`checkpoint_processes`) is recorded in it (`PROCESS_COUNT_FILE`), so the files of its highest processes are
missed too; a checkpoint saved before the count was recorded is counted from its files.

Trainer itself would resume a checkpoint at `global_step == max_steps` and train one step past it (it
skips the steps already done, then takes one before checking the limit), and a run whose epochs are all
done would "train" zero steps and overwrite `train_results.json` with a `train_loss` of 0.0. A run stopped early
(`recipes.kit.callbacks.LoggedEarlyStopping`: its saved count of evaluations without improvement reached the
patience) is finished too: resumed, it would train one more step before the callback stopped it again. Trainer
ends an epoch at exactly +1.0, so a finished epoch count is `epoch >= num_train_epochs`.
"""

import json
import logging
import re
import shutil
import zipfile
from pathlib import Path

from safetensors import safe_open
from transformers import TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from recipes.kit.arguments import ModelArguments, parse_overrides
from recipes.kit.errors import CheckpointError, ConfigError
from recipes.kit.model_config import config_differences, read_checkpoint_config
from recipes.kit.run_lock import LOCK_NAME

logger = logging.getLogger(__name__)

#: Files that hold a saved model's weights (a full model, a sharded one, LoRA adapters).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
#: Files each process of a run on several processes writes into a checkpoint, named by its index: transformers'
#: RNG state (`rng_state_1.pth`; one process writes `rng_state.pth`) and the recipes' per-process state
#: (`noise_generator_rank1.safetensors`, `recipes.kit.callbacks.RankStateCallback`).
PER_PROCESS_FILE = re.compile(r"^(?P<kind>rng_state_|.+_rank)(?P<index>\d+)\.(?P<suffix>pth|safetensors)$")
#: The file in which a checkpoint records how many processes wrote it (`{"num_processes": 2}`), written by the main
#: process (`recipes.kit.callbacks.ProcessCountInCheckpoints`).
PROCESS_COUNT_FILE = "process_count.json"


def plan_run(model_args: ModelArguments, training_args: TrainingArguments) -> str:
    """Applies the run lifecycle (module docstring) to the parsed arguments, in place: may empty `output_dir`, turn
    a rerun of a finished run into evaluate / predict with the saved folder (`do_train` false, `model_name_or_path`
    = `output_dir`), or set `resume_from_checkpoint` to the checkpoint to resume. With `dry_run`, `output_dir` is
    only read: what `overwrite_output_dir` would delete is left in place.

    Returns:
        what the run does with `output_dir`, in a line (`resume from .../checkpoint-4 (step 4)`).
    Raises:
        ConfigError: `overwrite_output_dir` would delete `model_name_or_path`.
        CheckpointError: a `resume_from_checkpoint` that is no folder; a checkpoint or final model that cannot be
            read, or whose config differs from this run's; a checkpoint that has trained the requested length with
            no final model; a trained model with no checkpoint to continue from.
    """
    output_dir = Path(training_args.output_dir)
    if getattr(training_args, "overwrite_output_dir", False):  # plain TrainingArguments (library use) lack it
        start_over(training_args, keep=model_args.model_name_or_path)
        if getattr(training_args, "dry_run", False) and training_args.do_train:
            return "start over: overwrite_output_dir empties it (not in a dry run), then a new run trains"
    if not training_args.do_train:
        return "no training (do_train false): evaluate / predict with model_name_or_path"
    explicit = training_args.resume_from_checkpoint if training_args.do_train else None
    if explicit and not Path(explicit).is_dir():
        what = "is a file, not a checkpoint folder" if Path(explicit).exists() else "no such folder"
        raise CheckpointError(
            f"resume_from_checkpoint {explicit}: {what}; give a checkpoint-N folder of a run, or leave it out "
            "(a run resumes from the last checkpoint in its output_dir by itself)"
        )
    if not (output_dir.is_dir() or explicit):
        return "a new run: trains from the start"
    target = requested_length(training_args)
    if has_final_model(output_dir):
        check_readable(output_dir, checkpoint=False)
        state = _read_state(output_dir / "trainer_state.json")
        if state is not None and (reached(state, training_args) or stopped_early(state)):
            check_same_config(output_dir, model_args)
            how = "stopped early" if stopped_early(state) else f"{target} requested"
            logger.info(
                "%s holds a finished run (%d steps, %s): nothing to train, using it as saved "
                "(raise max_steps / num_train_epochs to continue, or --overwrite_output_dir true to start over)",
                output_dir,
                state["global_step"],
                how,
            )
            training_args.do_train = False
            model_args.model_name_or_path, model_args.tokenizer_name = str(output_dir), None
            return f"a finished run ({state['global_step']} steps, {how}): nothing to train; evaluate / predict with it"
    checkpoint = explicit or last_readable_checkpoint(output_dir)
    if checkpoint:
        check_readable(Path(checkpoint))
        check_same_config(Path(checkpoint), model_args)
        state = _read_state(Path(checkpoint) / "trainer_state.json")
        if reached(state, training_args):
            raise CheckpointError(
                f"{checkpoint} has trained the {target} requested, but {output_dir} has no final model (the run "
                f"stopped after its last checkpoint): evaluate it with --do_train false --model_name_or_path "
                f"{checkpoint}, raise max_steps / num_train_epochs to continue, or --overwrite_output_dir true"
            )
        logger.info("resuming from %s (step %d)", checkpoint, state["global_step"])
        training_args.resume_from_checkpoint = str(checkpoint)
        return f"resume from {checkpoint} (step {state['global_step']})"
    if has_final_model(output_dir):
        raise CheckpointError(
            f"{output_dir} holds a trained model but no checkpoint to continue from ({target} requested): "
            "--overwrite_output_dir true to start over, or another output_dir"
        )
    return "a new run: trains from the start"


def start_over(training_args: TrainingArguments, *, keep: str | None) -> None:
    """Empties `output_dir` but for this run's lock (`recipes.kit.run_lock`); one process per folder deletes, the
    others wait for it. Nothing is deleted in a dry run.

    Args:
        keep: the model the run starts from (`model_name_or_path`).
    Raises:
        ConfigError: `keep` lies inside `output_dir`.
    """
    output_dir = Path(training_args.output_dir).resolve()
    if keep and output_dir in (Path(keep).resolve(), *Path(keep).resolve().parents):
        raise ConfigError(f"overwrite_output_dir would delete model_name_or_path {keep}: give another output_dir")
    if getattr(training_args, "dry_run", False):
        return
    with training_args.main_process_first(local=training_args.save_on_each_node, desc="overwrite_output_dir"):
        if training_args.should_save and output_dir.is_dir():
            logger.info("overwrite_output_dir: removing %s and starting over", training_args.output_dir)
            for path in output_dir.iterdir():
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.name != LOCK_NAME:
                    path.unlink()


def requested_length(training_args: TrainingArguments) -> str:
    """How long the run is asked to train, in words: `max_steps 3` or `num_train_epochs 2.0`."""
    if training_args.max_steps > 0:
        return f"max_steps {training_args.max_steps}"
    return f"num_train_epochs {training_args.num_train_epochs}"


def reached(state: dict, training_args: TrainingArguments) -> bool:
    """Whether a saved `trainer_state.json` has trained as long as this run asks: `global_step` at least
    `max_steps`, or (epochs) `epoch` at least `num_train_epochs`."""
    if training_args.max_steps > 0:
        return state["global_step"] >= training_args.max_steps
    return (state.get("epoch") or 0.0) >= training_args.num_train_epochs


def stopped_early(state: dict) -> bool:
    """Whether a saved `trainer_state.json` ended by early stopping (module docstring)."""
    for saved in (state.get("stateful_callbacks") or {}).values():
        if isinstance(saved, dict) and "early_stopping_patience_counter" in saved.get("attributes", {}):
            return saved["attributes"]["early_stopping_patience_counter"] >= saved["args"]["early_stopping_patience"]
    return False


def has_final_model(folder: Path) -> bool:
    """Whether `folder` holds saved weights (a model or LoRA adapters)."""
    return any((folder / name).is_file() for name in WEIGHT_FILES)


def last_readable_checkpoint(output_dir: Path) -> str | None:
    """The newest `checkpoint-N` of `output_dir` that can be read (None: no checkpoint); each unreadable one is
    named in a warning and skipped.

    Raises:
        CheckpointError: there are checkpoints but none can be read, naming them.
    """
    steps = sorted(
        (int(path.name.rsplit("-", 1)[1]), path)
        for path in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
        if path.is_dir() and path.name.rsplit("-", 1)[1].isdigit()
    )
    problems = []
    for _, checkpoint in reversed(steps):
        try:
            check_readable(checkpoint)
        except CheckpointError as error:
            problems.append(str(error))
            continue
        if problems:
            logger.warning("%s; resuming from %s, the last one that can be read", "; ".join(problems), checkpoint)
        return str(checkpoint)
    if problems:
        raise CheckpointError(
            f"no checkpoint in {output_dir} can be read: {'; '.join(problems)} (--overwrite_output_dir true to "
            "start over)"
        )
    return None


def check_readable(folder: Path, *, checkpoint: bool = True) -> None:
    """Checks that a checkpoint (or, `checkpoint` false, a saved model) can be read whole. Reads only headers
    (safetensors) and the zip directory at the end of torch files, not the tensors.

    Raises:
        CheckpointError: no weights, no `trainer_state.json` or a per-process file (a checkpoint: `per_process_gaps`),
            or a weights, state or JSON file cut short or corrupt, naming the file.
    """
    if not has_final_model(folder) and not any(folder.glob("pytorch_model_fsdp*")):
        raise CheckpointError(f"{folder}: no model weights (none of {', '.join(WEIGHT_FILES)})")
    if checkpoint and not (folder / "trainer_state.json").is_file():
        raise CheckpointError(f"{folder}: no trainer_state.json")
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            if path.suffix == ".safetensors":
                with safe_open(path, "pt"):
                    pass
            elif path.suffix in (".pt", ".pth", ".bin"):
                zipfile.ZipFile(path).close()
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        except Exception as error:  # each reader raises its own type for a cut or corrupt file
            raise CheckpointError(f"{path} cannot be read ({type(error).__name__}: {error})") from error
    if checkpoint and (gaps := per_process_gaps(folder)):
        raise CheckpointError(f"{folder}: not written by every process (no {', '.join(gaps)}; a process stopped first)")


def checkpoint_processes(folder: Path) -> int | None:
    """How many processes wrote the checkpoint `folder`: the count it records (`PROCESS_COUNT_FILE`); for a checkpoint
    saved before the count was recorded, counted from its per-process files (`PER_PROCESS_FILE`): the highest process
    index they name plus one, at least two where there are numbered RNG states, one with only `rng_state.pth`. A
    count from the files cannot see processes above the highest that wrote something. None: no count and no
    per-process file (a `save_only_model` checkpoint of an older run).

    Raises:
        CheckpointError: the recorded count cannot be read (no positive `num_processes`), naming the file.
    """
    recorded = folder / PROCESS_COUNT_FILE
    if recorded.is_file():
        try:
            count = json.loads(recorded.read_text(encoding="utf-8"))["num_processes"]
        except (ValueError, KeyError, TypeError) as error:  # not JSON, no count, not an object
            raise CheckpointError(f"{recorded} cannot be read ({type(error).__name__}: {error})") from error
        if not isinstance(count, int) or count < 1:
            raise CheckpointError(f"{recorded}: num_processes is {count!r}, not a positive count of processes")
        return count
    matches = [match for path in folder.iterdir() if (match := PER_PROCESS_FILE.match(path.name))]
    counted = max((int(match["index"]) + 1 for match in matches), default=0)
    if any(match["kind"] == "rng_state_" for match in matches):
        counted = max(counted, 2)
    return counted or (1 if (folder / "rng_state.pth").is_file() else None)


def per_process_gaps(folder: Path) -> list[str]:
    """The per-process files (`PER_PROCESS_FILE`) missing from a checkpoint: of each kind it holds, one for every
    process that wrote it (`checkpoint_processes`). Returns the missing names, sorted; empty when complete."""
    indices: dict[tuple[str, str], set[int]] = {}
    for path in folder.iterdir():
        if match := PER_PROCESS_FILE.match(path.name):
            indices.setdefault((match["kind"], match["suffix"]), set()).add(int(match["index"]))
    processes = checkpoint_processes(folder) or 0
    return sorted(
        f"{kind}{index}.{suffix}"
        for (kind, suffix), found in indices.items()
        for index in range(processes)
        if index not in found
    )


def check_same_config(folder: Path, model_args: ModelArguments) -> None:
    """Checks that the model config saved in `folder` has the values this run sets (its recipe fields and
    `config_overrides`). Folders without `config.json` (LoRA adapters) pass.

    Raises:
        CheckpointError: a field differs, naming each one (`d_model: 32 in checkpoint-4, 64 requested`).
        ConfigError: the saved config cannot be read.
    """
    if not (folder / "config.json").is_file():
        return
    saved = read_checkpoint_config(model_args, folder)
    requested = {**model_args.recipe_config_fields(), **parse_overrides(model_args.config_overrides)}
    differences = config_differences(saved, requested, where=folder.name)
    if differences:
        raise CheckpointError(
            f"{folder} was trained with another model config ({'; '.join(differences)}): use the same settings "
            "to continue, or --overwrite_output_dir true (or another output_dir) to train the new model"
        )


def _read_state(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
