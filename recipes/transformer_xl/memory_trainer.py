"""`Trainer` for segment-memory language models (Transformer-XL) on ordered streams, and its evaluation protocol.

Plain `Trainer` shuffles batches, shards them across processes by index, and forgets everything between
steps. Here:
- the dataloaders hand out `data.streams.StreamSegments` items in order, unsharded: each rank's dataset
  already holds only that rank's rows, so batch t+1 continues batch t on every process, also between
  the micro-batches of gradient accumulation;
- the detached memory returned by one step is fed to the next, and reset where a stream starts
  (`segment_index == 0`: every epoch start);
- the memory is saved with each checkpoint (one file per rank, `recipes.kit.callbacks`) and restored
  on resume, so a resumed run continues exactly where it stopped; on another number of processes too, with the
  same global batch (the same streams, so each rank's rows are a block of the same rows): the memory of all ranks
  is re-split by rows as the streams are (`reshard_memory`).

Evaluation protocol (Dai et al. 2019, arXiv 1901.02860, as the authors' `run_wt103_*.sh` scripts evaluate);
the one place this repository explains it, which the README and the recipe link to:
- a split is one token stream (its lines, each followed by `<eos>` when the tokenizer has it), cut into
  `eval_num_streams` contiguous rows of equal length (the last tokens, fewer than the number of rows, are
  left out) and walked in segments of `eval_tgt_len` tokens (default `tgt_len`); every token after its row's
  first is scored once, segment boundaries included: `eval_num_streams x (row length - 1)` tokens;
- the cut does not depend on the number of processes: each process walks a contiguous share of the rows
  (shares differ by at most one row; a process may have none, and still joins the final sums),
  `per_device_eval_batch_size` rows at a time, each group from its first segment with no memory. So the
  tokens scored and the context each one sees are the same on any number of processes, and so is the loss,
  up to float rounding in batches of other sizes;
- `eval_num_streams` defaults to 16, the count the authors evaluated their released WikiText-103 model with
  (`tf/sota/wt103.sh`, test perplexity 18.3; their PyTorch `eval.py` uses 10). Fewer rows give more tokens
  a full memory (only about the first `eval_mem_len` of each row see less: with 16 rows and memory 1600, a
  tenth of WikiText-103's test split) but split over fewer processes; 16 splits evenly over 1, 2, 4, 8 or 16
  processes. Another count is another evaluation: its perplexity differs a little (more rows, less context);
- the memory is carried from segment to segment and never reset inside a row, so each prediction sees its
  own segment plus up to `mem_len` earlier positions per layer;
- `eval_mem_len`, `eval_clamp_len` and `eval_same_length` replace the model's `mem_len`, `clamp_len` and
  `same_length` during evaluation only (unset: the training values): the paper evaluates with a longer
  memory than it trains with, relative distances clamped to those seen in training, and `same_length` so
  every query attends to the same number of keys;
- the loss is the mean over the scored tokens of all processes (token-weighted sums, not a mean of batch
  means), reported with perplexity (exp loss) and bits per token (loss / ln 2); a model trained by a
  self-normalising loss (`nce`, `ranking`) also reports the mean / std of log Z(h) and the fraction of tokens
  with |log Z| > 1;
- the `test` split, when there is one, is evaluated the same way (`test_*` metrics).
"""

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader
from transformers import TrainerCallback

from data.labels import IGNORE_INDEX
from data.metrics import perplexity_metrics
from recipes.kit.callbacks import RankStateCallback
from recipes.kit.language_models import LogPartitionSums, TokenLossSums
from recipes.kit.trainers import OwnEvaluationTrainer


@dataclass
class EvalMemory:
    """Memory settings used only while evaluating; `None` keeps the training value."""

    mem_len: int | None = None
    clamp_len: int | None = None
    same_length: bool | None = None


def _only_item(items: list[dict]) -> dict:
    return items[0]


class _StreamEpochCallback(TrainerCallback):
    """Re-cuts the training streams for each epoch, resumed runs included (the epoch comes from the
    trainer state, which a resume restores, rather than from the dataloader, which a resume wraps)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor((state.epoch or 0) + 1e-6))


class MemoryTrainer(OwnEvaluationTrainer):
    """Carries `mems` between steps; see the module docstring for what changes and why."""

    def __init__(self, *args, eval_memory: EvalMemory | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.eval_memory = eval_memory or EvalMemory()
        self.train_mems = None
        if self.train_dataset is not None:
            self.add_callback(_StreamEpochCallback(self.train_dataset))
        self.add_callback(
            RankStateCallback(
                "stream_memory",
                what="Transformer-XL memory",
                get_state=self.memory_state,
                set_state=self.restore_memory,
                on_other_layout="another global batch, so other streams: each process starts with empty memory",
                reshard=self.reshard_memory,
            )
        )

    def get_train_dataloader(self) -> DataLoader:
        # Deliberately not `accelerator.prepare`d: its sharding would give rank k batches k, k+N, ...
        # Each item is already a whole batch; batch_size=1 + unwrapping keeps a batch sampler, which
        # `skip_first_batches` needs to fast-forward a resumed run.
        return DataLoader(self.train_dataset, batch_size=1, shuffle=False, collate_fn=_only_item)

    def get_eval_dataloader(self, eval_dataset=None) -> DataLoader:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        return DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=_only_item)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if inputs.pop("segment_index") == 0:
            self.train_mems = None  # a stream starts: nothing before it to remember
        outputs = model(**inputs, mems=self.train_mems)
        self.train_mems = outputs.mems
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def evaluation_metrics(self, model, dataset, metric_key_prefix: str) -> dict[str, float]:
        """Token-weighted loss over the whole evaluation stream of every process, memory carried."""
        loss_sums = TokenLossSums(self.args.device)
        log_partition = LogPartitionSums(self.args.device, model.config)  # nce / ranking only
        mems = None
        with self._eval_memory_settings(model.config):
            for batch in self.get_eval_dataloader(dataset):
                if batch.pop("segment_index") == 0:
                    mems = None
                batch = self.on_device(batch)
                with self.autocast_smart_context_manager():
                    outputs = model(**batch, mems=mems)
                mems = outputs.mems
                num_tokens = batch["target_ids"].ne(IGNORE_INDEX).sum()
                if num_tokens > 0:
                    loss_sums.add(outputs.loss, num_tokens)
                    if outputs.get("log_partition_mean") is not None:
                        log_partition.add(outputs, num_tokens)
        return {**loss_sums.metrics(self), **log_partition.metrics(self)}

    def memory_state(self) -> dict[str, torch.Tensor] | None:
        """The training memory as tensors (`layer_0`, ...), for `RankStateCallback`; None before the first step."""
        if self.train_mems is None:
            return None
        return {f"layer_{i}": mem for i, mem in enumerate(self.train_mems)}

    def restore_memory(self, tensors: dict[str, torch.Tensor]) -> None:
        """Sets the training memory from `memory_state`'s tensors (resuming a run)."""
        self.train_mems = tuple(tensors[f"layer_{i}"].to(self.args.device) for i in range(len(tensors)))

    def reshard_memory(self, states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor] | None:
        """This process's rows of the memory that other processes saved (`memory_state`, one per process in
        process order), split over this run's processes as `data.streams.StreamSegments` splits the streams; `None`
        when their rows are not this run's streams (another global batch)."""
        memory = {key: torch.cat([state[key] for state in states]) for key in states[0]}
        if any(rows.shape[0] != self.train_dataset.num_streams for rows in memory.values()):
            return None
        return {key: rows.tensor_split(self.args.world_size)[self.args.process_index] for key, rows in memory.items()}

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # the training loss of the last logging interval
            logs |= perplexity_metrics(logs["loss"])
        super().log(logs, start_time)

    @contextmanager
    def _eval_memory_settings(self, config):
        overrides = {k: v for k, v in vars(self.eval_memory).items() if v is not None}
        saved = {k: getattr(config, k) for k in overrides}
        for key, value in overrides.items():
            setattr(config, key, value)
        try:
            yield
        finally:
            for key, value in saved.items():
                setattr(config, key, value)
