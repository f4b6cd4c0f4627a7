"""The NCE recipe's `Trainer`: training runs `Trainer`'s own loop with the model's sampled loss on
`data.streams.TokenBlocks`; evaluation scores `data.streams.SlidingWindows` (every token of the split after
the first, once, with context) token-weighted with the model's exact softmax loss, one batch of
full-vocabulary logits alive at a time, and, for a model trained by `nce` or `ranking`, reports the
self-normalisation statistics of log Z(h).
"""

from torch.utils.data import DataLoader, Subset
from transformers import default_data_collator

from data.labels import IGNORE_INDEX
from data.streams import SlidingWindows
from recipes.kit.language_models import LogPartitionSums, TokenLossSums
from recipes.kit.trainers import OwnEvaluationTrainer


class NCETrainer(OwnEvaluationTrainer):
    """`Trainer` whose evaluation is the exact, token-weighted loss over every window (see the module
    docstring); each process scores its own windows, none twice."""

    def evaluation_metrics(self, model, dataset: SlidingWindows, metric_key_prefix: str) -> dict[str, float]:
        rank, world = self.args.process_index, self.args.world_size
        # Every rank scores its own windows, none twice (no padding of the last batch as a sharded loader does).
        shard = Subset(dataset, range(rank, len(dataset), world))
        loader = DataLoader(shard, batch_size=self.args.per_device_eval_batch_size, collate_fn=default_data_collator)
        loss_sums, log_partition = TokenLossSums(self.args.device), LogPartitionSums(self.args.device, model.config)
        for batch in loader:
            batch = self.on_device(batch)
            with self.autocast_smart_context_manager():
                output = model(**batch)
            num_tokens = batch["labels"][:, 1:].ne(IGNORE_INDEX).sum()
            if num_tokens > 0:
                loss_sums.add(output.loss, num_tokens)
                log_partition.add(output, num_tokens)
        return {**loss_sums.metrics(self), **log_partition.metrics(self)}
