"""Worker for `test_transformer_xl.py`, run under `accelerate launch --multi_gpu --num_processes 2`.

Trains a tiny Transformer-XL with `MemoryTrainer` on a stream of distinct token ids (so row r continues
exactly when the next segment's first id is the previous segment's last id + 1) and writes, per rank,
every forward call's first and last input ids and the identity of the memory passed in and returned, and the number
of gloo worker threads alive before and after `leave_process_group`.
Usage: stream_continuity_worker.py OUTPUT_DIR GRADIENT_ACCUMULATION_STEPS CONFIG_DIR (the model's config.json,
written by the test from its tiny config: the worker's process cannot import the tests)
"""

import json
import sys
from pathlib import Path

import torch
from transformers import TrainingArguments

from custom_models.transfo_xl import TransformerXLConfig, TransformerXLForCausalLM
from data.streams import StreamSegments
from recipes.kit.distributed import gloo_worker_threads, leave_process_group
from recipes.transformer_xl.memory_trainer import MemoryTrainer

output_dir, accumulation, config_dir = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
args = TrainingArguments(
    output_dir=str(output_dir),
    per_device_train_batch_size=2,
    gradient_accumulation_steps=accumulation,
    max_steps=5,
    use_cpu=True,
    save_strategy="no",
    report_to="none",
    logging_steps=100,
    disable_tqdm=True,
)
model = TransformerXLForCausalLM(TransformerXLConfig.from_pretrained(config_dir))
dataset = StreamSegments(
    torch.arange(1000), num_streams=2 * args.world_size, tgt_len=5, rank=args.process_index, world_size=args.world_size
)
calls = []


def record(module, inputs, kwargs, output):
    mems_in = kwargs.get("mems")
    calls.append(
        {
            "first": kwargs["input_ids"][:, 0].tolist(),
            "last": kwargs["input_ids"][:, -1].tolist(),
            "mems_in": None if mems_in is None else [m.data_ptr() for m in mems_in],
            "mems_out": [m.data_ptr() for m in output.mems],
            "mems_out_requires_grad": any(m.requires_grad for m in output.mems),
        }
    )


model.register_forward_hook(record, with_kwargs=True)
MemoryTrainer(model=model, args=args, train_dataset=dataset).train()
gloo_threads = {"before_leaving": gloo_worker_threads()}
leave_process_group()
gloo_threads["after_leaving"] = gloo_worker_threads()
report = {"rank": args.process_index, "world_size": args.world_size, "calls": calls, "gloo_threads": gloo_threads}
(output_dir / f"calls_rank{args.process_index}.json").write_text(json.dumps(report))
