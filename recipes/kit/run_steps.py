"""The run steps of every recipe, written once: start (seed, logging, the model config checked, the run
lifecycle), train, evaluate, and save with a model card and push. The data steps are `recipes.kit.data_steps`, the
Model step `recipes.kit.model_loading`.

`start_run` comes before any data or model loads. It may change the process's accelerate state: an FSDP launch on
CPU processes is made to shard (`recipes.kit.distributed.shard_on_cpu_processes`, logged when it does). A new
model's config was checked at parse time; one that needs the checkpoint's is checked here
(`check_checkpoint_config`), so a bad `config_overrides` fails here. The run lifecycle (`recipes.kit.lifecycle`)
may then change `training_args` and `model_args`.

The model's own code (for `trust_remote_code`) is written into `output_dir` before training starts: `Trainer`'s
pushes during training upload config and weights but not the modeling files, so without it a Hub copy made
mid-training could not be loaded until the final push. The model card is written by
`RecipeTrainer.create_model_card`, and `Trainer.push_to_hub` writes the same card again before uploading.
"""

import logging
import os
from collections.abc import Mapping
from typing import Any

import datasets
import transformers
from transformers import PreTrainedModel, Trainer, TrainingArguments
from transformers.dynamic_module_utils import custom_object_save

from recipes.kit.adapters import settle_adapters
from recipes.kit.arguments import DataArguments, LoraArguments, ModelArguments, RecipeTrainingArguments
from recipes.kit.distributed import save_full_model, shard_on_cpu_processes
from recipes.kit.launch_checks import gpu_config_on_cpu
from recipes.kit.lifecycle import plan_run
from recipes.kit.model_card import CardInfo, is_quality, pipeline_tag
from recipes.kit.model_config import check_checkpoint_config
from recipes.kit.trainers import RecipeTrainer

logger = logging.getLogger(__name__)


def start_run(model_args: ModelArguments, training_args: TrainingArguments) -> None:
    """The first step of every recipe (module docstring): the seed (`set_seed`, every library's generator);
    logging (with `gpu_config_on_cpu`'s line when it applies); FSDP on CPU processes; `check_checkpoint_config`;
    then the run lifecycle (`plan_run`: resume, finish, or start over; recorded as `run_plan`), which may change
    `training_args` and `model_args`.

    Raises:
        ConfigError: a model config or an `output_dir` the run cannot use (`CheckpointError` for a checkpoint).
    """
    transformers.set_seed(training_args.seed)
    setup_logging(training_args)
    if (note := gpu_config_on_cpu()) is not None and training_args.process_index == 0:  # one line, not one a process
        logger.warning(note)
    shard_on_cpu_processes()
    check_checkpoint_config(model_args)
    plan = plan_run(model_args, training_args)
    if isinstance(training_args, RecipeTrainingArguments):
        training_args.run_plan = plan


def setup_logging(training_args: TrainingArguments) -> None:
    """The recipe's own messages at INFO on the main process (WARNING elsewhere); transformers and datasets
    at `--log_level` / `--log_level_replica` (warnings by default, so their progress chatter stays out), each through
    its own handler only (with `CI=true`, as CI services set it, transformers also hands its records to the root
    logger, which printed every line twice)."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler()],
    )
    logging.getLogger().setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    for library in (transformers, datasets):
        library.utils.logging.set_verbosity(training_args.get_process_log_level())
        library.utils.logging.disable_propagation()
    logger.info(
        "process %d of %d, device %s, bf16 %s",
        training_args.process_index,
        training_args.world_size,
        training_args.device,
        training_args.bf16,
    )


def train(trainer: Trainer) -> None:
    """The `do_train` step: writes the model's code (`save_model_code`; with LoRA, the base's), trains (resuming
    from `resume_from_checkpoint`, which the run lifecycle set), then writes `train_results.json` and
    `trainer_state.json` (every logged loss)."""
    if trainer.args.should_save:  # one writer per folder
        model = trainer.accelerator.unwrap_model(trainer.model)
        save_model_code(getattr(model, "get_base_model", lambda: model)(), trainer.args.output_dir)  # LoRA: base
    train_result = trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()


def evaluate_splits(trainer: Trainer, eval_datasets: Mapping[str, Any]) -> dict[str, float]:
    """The `do_eval` step: evaluates each of `eval_datasets` (metric prefix -> data set), writing
    `<prefix>_results.json`; returns the metrics of all of them."""
    metrics = {}
    for prefix, dataset in eval_datasets.items():
        split_metrics = trainer.evaluate(dataset, metric_key_prefix=prefix)
        trainer.save_metrics(prefix, split_metrics)
        metrics |= split_metrics
    return metrics


def save_model_code(model: PreTrainedModel, output_dir: str) -> None:
    """Writes the model's own code (for `trust_remote_code`) into `output_dir` (module docstring); nothing for a
    model class not registered with the Auto classes (no `_auto_class`)."""
    if getattr(type(model), "_auto_class", None) is not None:
        os.makedirs(output_dir, exist_ok=True)
        custom_object_save(model, output_dir, config=model.config)


def save_card_and_push(
    trainer: RecipeTrainer, *, title: str, data: str, metrics: dict[str, Any], notes: str, arguments: tuple
) -> None:
    """The end of every training run: settles LoRA adapters (`recipes.kit.adapters.settle_adapters`), saves the
    model and its tokenizer to `output_dir` (`save_full_model`), writes the model card as its README.md and, with
    `--push_to_hub`, pushes the folder.

    Args:
        title, data, notes: the card's title, data line (`recipes.kit.data_steps.describe_data`) and paragraph.
        metrics: the final metrics; the card keeps the float ones that measure the model (`is_quality`).
        arguments: the run's parsed dataclasses, for the card's resolved configuration.
    """
    model_args = next(args for args in arguments if isinstance(args, ModelArguments))
    data_args = next(args for args in arguments if isinstance(args, DataArguments))
    lora_args = next((args for args in arguments if isinstance(args, LoraArguments)), None)
    if lora_args is not None:
        settle_adapters(trainer, lora_args, model_args)
    save_full_model(trainer)
    model = trainer.accelerator.unwrap_model(trainer.model)
    checkpoint = model_args.model_name_or_path
    dataset_id = None if data_args.train_file or data_args.dataset_mixture else data_args.dataset_name
    trainer.card_info = CardInfo(
        title=title,
        data=data,
        notes=notes,
        task_type=pipeline_tag(model),
        metrics={name: value for name, value in metrics.items() if isinstance(value, float) and is_quality(name)},
        arguments=arguments,
        base_model=checkpoint if checkpoint and not os.path.exists(checkpoint) else None,
        dataset_id=dataset_id,
        dataset_revision=data_args.dataset_revision if dataset_id else None,
    )
    trainer.create_model_card()
    if trainer.args.push_to_hub:
        trainer.push_to_hub()
