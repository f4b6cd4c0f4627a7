"""Folds a folder of LoRA adapters saved unmerged into a plain model folder:

    python -m recipes.merge_adapter ADAPTER_DIR OUT_DIR [--trust_remote_code]

`ADAPTER_DIR` is what a recipe writes with `merge_lora_on_save false` (`recipes.kit.adapters`); `OUT_DIR` gets what
the same run would have written with `merge_lora_on_save true`: the merged weights, config, generation config
(the run's, saved beside the adapters) and model code (`save_pretrained`), and the adapter folder's tokenizer
files and model card, copied. The merge is PEFT's `merge_and_unload` on the same base and adapters, the call
`recipes.kit.adapters.settle_adapters` makes, so the weights and logits equal those of the folder merged on save. A
folder that is not an adapter folder, or an `OUT_DIR` that holds files, is refused in one `error:` line.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

import custom_models  # noqa: F401  (registers this project's models with the Auto classes)
from recipes.kit.adapters import ADAPTER_CONFIG, is_adapter_folder, load_adapter_model
from recipes.kit.errors import EXIT_STATUS, ConfigError, debug_requested, user_error_message

#: The Auto class of the base model, by PEFT's `task_type` (those of the recipes with `use_lora`).
AUTO_CLASSES = {"SEQ_CLS": AutoModelForSequenceClassification, "CAUSAL_LM": AutoModelForCausalLM}
#: Files of the adapter folder copied as they are: the tokenizer's and the model card.
COPIED = ("tokenizer*.json", "special_tokens_map.json", "vocab.*", "merges.txt", "*.model", "README.md")


def merge_adapter(adapter_dir: str | Path, output_dir: str | Path, *, trust_remote_code: bool = False) -> None:
    """Writes the merged model of `adapter_dir` into `output_dir` (module docstring).

    Args:
        trust_remote_code: run the base checkpoint's own code (a model class this project does not define).
    Raises:
        ConfigError: `adapter_dir` is not an adapter folder, names no base, or its weights do not fit the base; its
            `task_type` is not one of `AUTO_CLASSES`; or `output_dir` already holds files.
    """
    adapter_dir, output_dir = Path(adapter_dir), Path(output_dir)
    if not is_adapter_folder(adapter_dir):
        raise ConfigError(
            f"{adapter_dir} is not a folder of LoRA adapters ({ADAPTER_CONFIG} without config.json), the folder "
            "a recipe writes with merge_lora_on_save false"
        )
    if output_dir.exists() and any(output_dir.iterdir()):
        raise ConfigError(f"{output_dir} already holds files: give a new or empty OUT_DIR")
    task_type = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("task_type")
    if task_type not in AUTO_CLASSES:
        raise ConfigError(f"{adapter_dir}: task_type {task_type!r} in {ADAPTER_CONFIG}; merged: {list(AUTO_CLASSES)}")
    model = load_adapter_model(AUTO_CLASSES[task_type], adapter_dir, trust_remote_code=trust_remote_code)
    merged = model.merge_and_unload()
    generation_config = adapter_dir / "generation_config.json"
    if generation_config.is_file():  # the recipe's, not the base checkpoint's
        merged.generation_config = type(merged.generation_config).from_pretrained(adapter_dir)
    merged.save_pretrained(output_dir)
    for pattern in COPIED:
        for path in adapter_dir.glob(pattern):
            shutil.copy2(path, output_dir / path.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recipes.merge_adapter", description=__doc__.split("\n")[0])
    parser.add_argument("adapter_dir", help="Folder written with merge_lora_on_save false.")
    parser.add_argument("output_dir", help="New folder for the merged model.")
    parser.add_argument("--trust_remote_code", action="store_true", help="Run the base checkpoint's own code.")
    args = parser.parse_args(argv)
    try:
        merge_adapter(args.adapter_dir, args.output_dir, trust_remote_code=args.trust_remote_code)
    except Exception as error:
        message = user_error_message(error, {})
        if message is None or debug_requested():
            raise
        sys.stderr.write(f"error: {message}\n")
        sys.exit(EXIT_STATUS)


if __name__ == "__main__":
    main()
