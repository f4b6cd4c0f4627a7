"""Worker for `test_token_cache.py`, run by `accelerate launch` on 2 processes: prepares the tokenizer and the
training stream as the recipes do (inside `main_process_first`) and writes, per rank, how many splits it
tokenised itself, its tokenizer's vocabulary and its rows of the streams.
Usage: token_cache_worker.py TRAIN_FILE CACHE_DIR REPORT_DIR
"""

import json
import sys
from pathlib import Path

from transformers import TrainingArguments

import data.token_cache as token_cache
from data.lm_corpus import text_corpus_splits
from data.streams import StreamSegments
from recipes.kit.arguments import ModelArguments
from recipes.kit.data_steps import load_tokenizer
from recipes.kit.distributed import leave_process_group

train_file, cache_dir, report_dir = sys.argv[1:]
args = TrainingArguments(output_dir=str(Path(report_dir) / "out"), use_cpu=True, report_to="none")
tokenised = []
encode = token_cache._encode_batches


def recording_encode(split, *rest, **kwargs):
    tokenised.append(split.name)
    yield from encode(split, *rest, **kwargs)


token_cache._encode_batches = recording_encode
corpus = text_corpus_splits(train_file=train_file)
model_args = ModelArguments(tokenizer_vocab_size=100)  # no tokenizer given: one is trained
tokenizer = load_tokenizer(model_args, args, corpus["train"], kind="word", cache_dir=cache_dir)
with args.main_process_first():
    streams = token_cache.prepare_token_streams(corpus, tokenizer, add_eos=True, cache_dir=cache_dir)
segments = StreamSegments(streams["train"], num_streams=4, tgt_len=5, rank=args.process_index, world_size=2)
report = {
    "world_size": args.world_size,
    "tokenised_splits": len(tokenised),
    "vocab": tokenizer.get_vocab(),
    "rows": segments.rows.tolist(),
}
(Path(report_dir) / f"rank{args.process_index}.json").write_text(json.dumps(report))
leave_process_group()  # together, so gloo cannot abort a peer still exiting
