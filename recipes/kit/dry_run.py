"""`--dry_run true`: a run does everything up to its first training step, says what it would do, and stops.

Everything that can fail before training is done for real: the arguments are parsed and checked, the run lifecycle
decides what to do with `output_dir`, the data are read and tokenised, the tokenizer is loaded or trained, the model
is built and the `Trainer` constructed. Then `recipes.kit.trainers.RecipeTrainer` raises `DryRunFinished` with the
report of `describe_run`, and `recipes.kit.command_line.run_from_command_line` prints it after the resolved
configuration (YAML that reads back as the same run) and exits 0. Nothing is written into `output_dir`: no lock,
no emptying by `overwrite_output_dir`, no push; caches outside it (tokenised data, trained tokenizers) are filled
as a real run would fill them, so the real run then starts from them.

The decoded examples are the first two rows of the first training batch, as the model gets them (collated, on
this process, padding left out, a padding-free batch cut back into its rows), with the tokens that carry loss in
`[[ ]]`: for a causal LM, the positions whose label is not `IGNORE_INDEX` (the model shifts labels, so a row's
first token is never a target); for Transformer-XL, its `target_ids`; for a classifier, the text and its label.
"""

from typing import Any

import pyarrow.compute as pc
import torch
from transformers import Trainer

from data.labels import IGNORE_INDEX

#: How many training rows a dry run decodes.
EXAMPLES = 2


class DryRunFinished(Exception):  # noqa: N818  (not an error: the run stops because it was asked to)
    """Raised once a dry run's trainer is built; `report` says what the run would do."""

    def __init__(self, report: str) -> None:
        super().__init__(report)
        self.report = report


def describe_run(trainer: Trainer) -> str:
    """What `trainer`'s run would do: the plan for `output_dir` (`run_plan`, set by the run lifecycle), the
    training rows, tokens, batch, steps and epochs (`Trainer.set_initial_training_values`, the numbers `train`
    would use), the evaluation rows, and `EXAMPLES` decoded training rows."""
    args = trainer.args
    lines = [f"output_dir {args.output_dir}: {getattr(args, 'run_plan', '') or 'no plan recorded'}"]
    if args.do_train:
        dataloader = trainer.get_train_dataloader()
        epochs, steps_per_epoch, _, _, batch, _, max_steps = trainer.set_initial_training_values(args, dataloader)
        lines.append(
            f"training: {_size(trainer.train_dataset)}; {batch} rows a step ({args.world_size} process(es) x "
            f"{args.per_device_train_batch_size} x {args.gradient_accumulation_steps} accumulated); "
            f"{steps_per_epoch} steps an epoch; {max_steps} steps, {epochs} epoch(s)"
        )
        lines += _decoded_examples(next(iter(dataloader)), trainer)
    if args.do_eval and trainer.eval_dataset is not None:
        lines.append(f"evaluation: {_size(trainer.eval_dataset)}")
    return "\n".join(lines)


def _size(dataset: Any) -> str:
    """`"N rows, T tokens"` of a data set (tokens where it holds them: an `input_ids` column, or a token stream;
    Transformer-XL's items are segments of all its rows at once)."""
    rows = f"{len(dataset)} {'segments' if hasattr(dataset, 'segments_per_row') else 'rows'}"
    if hasattr(dataset, "data") and "input_ids" in getattr(dataset, "column_names", ()):  # a datasets.Dataset
        return f"{rows}, {pc.sum(pc.list_value_length(dataset.data.column('input_ids'))).as_py()} tokens"
    tensors = [getattr(dataset, name) for name in ("blocks", "stream", "rows") if hasattr(dataset, name)]
    if tensors and isinstance(tensors[0], torch.Tensor):
        return f"{rows}, {tensors[0].numel()} tokens"
    return rows


def _decoded_examples(batch: dict[str, Any], trainer: Trainer) -> list[str]:
    batch = _unpacked(batch)
    tokenizer = trainer.processing_class
    lines = []
    for row in range(min(EXAMPLES, len(batch["input_ids"]))):
        if "target_ids" in batch:  # Transformer-XL: every target is scored
            ids, scored = batch["target_ids"][row], batch["target_ids"][row] != IGNORE_INDEX
        elif "labels" in batch and batch["labels"].dim() == batch["input_ids"].dim():  # a causal LM's labels
            ids, scored = batch["input_ids"][row], batch["labels"][row] != IGNORE_INDEX
            scored[0] = False  # shifted inside the model: the first token is never a target
        else:  # a classifier: the text, and its label
            ids, scored = batch["input_ids"][row], None
        kept = batch["attention_mask"][row].bool() if "attention_mask" in batch else torch.ones_like(ids).bool()
        ids = ids[kept]  # padding left out
        text = tokenizer.decode(ids) if scored is None else _marked(ids.tolist(), scored[kept].tolist(), tokenizer)
        label = _label_name(batch["labels"][row], trainer) if scored is None else ""
        lines.append(f"example {row}: {text!r}{label}")
    return lines


def _unpacked(batch: dict[str, Any]) -> dict[str, Any]:
    """A padding-free batch (one row of concatenated examples, `position_ids` restarting at each) as one row per
    example, right-padded, with its `attention_mask`; any other batch as it is."""
    if "position_ids" not in batch or "attention_mask" in batch or batch["input_ids"].shape[0] != 1:
        return batch
    starts = (batch["position_ids"][0] == 0).nonzero().squeeze(1).tolist()
    spans = list(zip(starts, [*starts[1:], batch["input_ids"].shape[1]]))
    length = max(end - start for start, end in spans)
    rows = {name: torch.full((len(spans), length), IGNORE_INDEX) for name in ("input_ids", "labels")}
    rows["attention_mask"] = torch.zeros((len(spans), length), dtype=torch.long)
    for row, (start, end) in enumerate(spans):
        for name in ("input_ids", "labels"):
            rows[name][row, : end - start] = batch[name][0, start:end]
        rows["attention_mask"][row, : end - start] = 1
    return rows


def _marked(ids: list[int], scored: list[bool], tokenizer: Any) -> str:
    """The text of `ids`, each run of scored tokens in `[[ ]]`."""
    pieces, start = [], 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or scored[end] != scored[start]:
            text = tokenizer.decode(ids[start:end])
            pieces.append(f"[[{text}]]" if scored[start] else text)
            start = end
    return "".join(pieces)


def _label_name(label: torch.Tensor, trainer: Trainer) -> str:
    id2label = getattr(trainer.accelerator.unwrap_model(trainer.model).config, "id2label", None) or {}
    return f" -> label {id2label.get(int(label), int(label)) if label.dim() == 0 else label.tolist()}"
