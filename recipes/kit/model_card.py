"""The model card of a recipe's output folder (README.md of `output_dir`, pushed with the model).

The card is the recipe's: front matter through `huggingface_hub.ModelCardData` (`base_model`, `datasets` and
`dataset_revision` when pinned, `library_name`, `pipeline_tag`, `tags`, the final metrics as model-index
`eval_results`), what the model is, its data, its metrics, the command as typed (paths inside the repository written
relative to it, token values hidden) and the resolved configuration of the run as YAML that the recipe reads back
(every field of the recipe's own argument classes; of `TrainingArguments` only the fields that differ from their
declared defaults).
`recipes.kit.trainers.RecipeTrainer` writes it from the public `create_model_card`, the method
`Trainer.push_to_hub` calls, so a push uploads this card rather than transformers' generic one.
"""

import dataclasses
import enum
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import TrainingArguments

#: The Hub's pipeline tag of a model, by the ending of its class name.
PIPELINE_TAGS = {"ForSequenceClassification": "text-classification", "ForCausalLM": "text-generation"}
REPO_ROOT = Path(__file__).resolve().parents[2]
_HIDDEN = "***"


@dataclasses.dataclass
class CardInfo:
    """What a recipe knows about its model for the card. `dataset_id`: the Hub data set, None for local
    files (`data` then names them); `dataset_revision`: the branch, tag or commit of it that was read (None: the
    default branch); `base_model`: the Hub checkpoint fine-tuned, None for a new model or a local folder;
    `task_type`: the model-index task (`text-classification`, `text-generation`)."""

    title: str
    data: str
    notes: str
    task_type: str | None
    metrics: dict[str, float]  # float values only
    arguments: tuple[Any, ...]
    base_model: str | None = None
    dataset_id: str | None = None
    dataset_revision: str | None = None
    tags: list[str] = dataclasses.field(default_factory=lambda: ["finetune-recipes"])


def is_quality(metric: str) -> bool:
    """Whether `metric` measures the model (not the machine, as `eval_runtime`, or the run, as `epoch`)."""
    return metric != "epoch" and not metric.endswith(("_runtime", "_per_second"))


def pipeline_tag(model: Any) -> str | None:
    """The pipeline tag of `model` (`PIPELINE_TAGS`), None for another kind of model."""
    name = type(model).__name__
    return next((tag for suffix, tag in PIPELINE_TAGS.items() if name.endswith(suffix)), None)


def model_card(info: CardInfo, *, extra_tags: list[str] = (), model_name: str | None = None) -> ModelCard:
    """The card of `info` (see the module docstring)."""
    name = model_name or info.title
    source = info.dataset_id or "local files"
    eval_results = [
        EvalResult(
            task_type=info.task_type,
            dataset_type=source,
            dataset_name=source,
            metric_type=metric,
            metric_value=value,
        )
        for metric, value in sorted(info.metrics.items())
        if info.task_type  # model-index needs a task
    ]
    data = ModelCardData(
        base_model=info.base_model,
        datasets=[info.dataset_id] if info.dataset_id else None,
        dataset_revision=info.dataset_revision,  # not a key of the Hub's schema: ModelCardData keeps it as given
        library_name="transformers",
        pipeline_tag=info.task_type,
        tags=sorted({*info.tags, *extra_tags}),
        model_name=name,
        eval_results=eval_results or None,
    )
    rows = "\n".join(f"| {metric} | {value:.4f} |" for metric, value in sorted(info.metrics.items()))
    content = (
        f"---\n{data.to_yaml()}\n---\n\n# {info.title}\n\n{info.notes}\n\n## Data\n\n{info.data}\n\n"
        f"## Evaluation\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"## How it was made\n\n```bash\n{typed_command()}\n```\n\n"
        f"The resolved configuration of the run:\n\n```yaml\n{resolved_configuration(info.arguments)}```\n"
    )
    return ModelCard(content)


def typed_command(argv: list[str] | None = None) -> str:
    """The command line that started this process as the user typed it under `accelerate launch`, with
    paths inside the repository written relative to its root and any token value hidden."""
    argv = [_portable(arg) for arg in (sys.argv if argv is None else argv)]
    for i, arg in enumerate(argv):
        if arg.startswith("--") and _is_secret(arg.split("=", 1)[0]):
            if "=" in arg:
                argv[i] = arg.split("=", 1)[0] + "=" + _HIDDEN
            elif i + 1 < len(argv):
                argv[i + 1] = _HIDDEN
    return "accelerate launch " + " ".join(argv)


def resolved_configuration(arguments: tuple[Any, ...], *, leave_out: tuple[str, ...] = ()) -> str:
    """The run's configuration of `arguments` (the parsed dataclasses) as YAML (module docstring); paths relative
    to the repository, tokens and the fields named in `leave_out` left out."""
    values: dict[str, Any] = {}
    for args in arguments:
        only_changed = isinstance(args, TrainingArguments)
        for field in dataclasses.fields(args):
            value = _plain(getattr(args, field.name))
            if field.name in leave_out or not field.init or _is_secret(field.name):
                continue
            if not (only_changed and value == _declared_default(field)):
                values[field.name] = value
    return yaml.safe_dump(values, sort_keys=False, allow_unicode=True)


def _declared_default(field: dataclasses.Field) -> Any:
    """The field's default as declared, as plain data. Read from the declaration, not from a new instance:
    building another `TrainingArguments` resets the process's distributed state (accelerate's `PartialState`),
    which breaks a multi-process run after its card is written."""
    if field.default is not dataclasses.MISSING:
        return _plain(field.default)
    if field.default_factory is not dataclasses.MISSING:
        return _plain(field.default_factory())
    return dataclasses.MISSING


def _is_secret(name: str) -> bool:
    """Whether a field or flag holds a token (`hub_token`), unlike `tokenizer_name` or `token_cache_dir`."""
    return name.endswith("token")


def _plain(value: Any) -> Any:
    """`value` as plain YAML data: enums by value, paths inside the repository relative to it."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # e.g. TrainingArguments' AcceleratorConfig
        return _plain(dataclasses.asdict(value))
    if isinstance(value, str):
        return _portable(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def _portable(text: str) -> str:
    """An absolute path inside the repository, relative to its root; anything else unchanged."""
    if not os.path.isabs(text):
        return text
    path = Path(text)
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else text
