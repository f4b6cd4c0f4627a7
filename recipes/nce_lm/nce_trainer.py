"""The NCE recipe's data set and `Trainer`: fixed-length blocks of one token stream, evaluated exactly.

`TokenBlocks` cuts the training or evaluation stream into blocks of `block_size` tokens (the tail is
dropped, as in transformers' `run_clm.py`). `NCETrainer` evaluates token-weighted with the model's exact
softmax loss, one batch of full-vocabulary logits alive at a time, and reports the self-normalisation
statistics of log Z(h); training runs `Trainer`'s own loop with the model's sampled loss.
"""

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from transformers import default_data_collator

from recipes.evaluation import LogPartitionSums, OwnEvaluationTrainer, TokenLossSums


class TokenBlocks(Dataset):
    """`input_ids` = `labels` = block i of the stream cut into `block_size` tokens (the model shifts the
    labels). The blocks are views into `stream` (memory-mapped int32 ids from `data.token_cache`); only
    the block handed out is copied, as int64."""

    def __init__(self, stream: torch.Tensor, *, block_size: int) -> None:
        if stream.numel() < block_size:
            raise ValueError(f"{stream.numel()} tokens: fewer than one block of block_size {block_size}")
        self.blocks = stream[: stream.numel() // block_size * block_size].view(-1, block_size)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        block = self.blocks[i].long()
        return {"input_ids": block, "labels": block}


class NCETrainer(OwnEvaluationTrainer):
    """`Trainer` whose evaluation is the exact, token-weighted loss over every block (see the module
    docstring); each process scores its own blocks, none twice."""

    def evaluation_metrics(self, model, dataset: TokenBlocks, metric_key_prefix: str) -> dict[str, float]:
        rank, world = self.args.process_index, self.args.world_size
        # Every rank scores its own blocks, none twice (no padding of the last batch as a sharded loader does).
        shard = Subset(dataset, range(rank, len(dataset), world))
        loader = DataLoader(shard, batch_size=self.args.per_device_eval_batch_size, collate_fn=default_data_collator)
        loss_sums, log_partition = TokenLossSums(self.args.device), LogPartitionSums(self.args.device)
        for batch in loader:
            batch = self.on_device(batch)
            with self.autocast_smart_context_manager():
                output = model(**batch)
            num_tokens = batch["labels"][:, 1:].ne(-100).sum()
            if num_tokens > 0:
                loss_sums.add(output.loss, num_tokens)
                log_partition.add(output, num_tokens)
        return {**loss_sums.metrics(self), **log_partition.metrics(self)}
