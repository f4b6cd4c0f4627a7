"""The QA recipe's answer-only loss (`recipes/closed_book_qa/answer_loss.py`) against `Trainer`'s own
`compute_loss` on a tiny GPT-2: same loss and gradients, with the output layer run on the scored positions only.

Tolerance 1e-6: the same float32 products and log-softmax on fewer rows; only the order of the final sum can
differ (~1e-7 of a ~4.6 loss), while a position off by one or a wrong divisor moves it by > 1e-2.
"""

import pytest
import torch
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from data.qa_features import QATrainingCollator
from recipes.closed_book_qa.answer_loss import QATrainer

VOCAB, PAD = 97, 0


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=32)
    config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = 0.0
    return GPT2LMHeadModel(config).train()


def qa_batch() -> dict[str, torch.Tensor]:
    """Three right-padded examples of different lengths; labels only on the last 2-4 tokens (the answer)."""
    generator = torch.Generator().manual_seed(1)
    features = []
    for length, answer in ((12, 3), (9, 2), (15, 4)):
        ids = torch.randint(1, VOCAB, (length,), generator=generator).tolist()
        features.append({"input_ids": ids, "labels": [-100] * (length - answer) + ids[-answer:]})
    return QATrainingCollator(PAD)(features)


def trainer(cls, model, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    if cls is Trainer:
        return Trainer(model=model, args=args)
    return cls(
        model=model, args=args, prompt_template="{question}", max_prompt_length=8, generation_config=GenerationConfig()
    )


@pytest.mark.parametrize("num_items_in_batch", [None, 7])  # a mean; a sum over a larger accumulated batch
def test_answer_only_loss_and_gradients_equal_trainers_loss(tmp_path, num_items_in_batch):
    results = {}
    for cls in (Trainer, QATrainer):
        model = tiny_gpt2()
        loss = trainer(cls, model, tmp_path).compute_loss(model, qa_batch(), num_items_in_batch=num_items_in_batch)
        loss.backward()
        results[cls] = loss.detach(), {name: p.grad for name, p in model.named_parameters()}
    (expected, expected_grads), (loss, grads) = results[Trainer], results[QATrainer]
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_output_layer_runs_on_the_scored_positions_only(tmp_path):
    model = tiny_gpt2()
    rows = []
    model.lm_head.register_forward_hook(lambda module, args, output: rows.append(output.shape[:-1].numel()))
    batch = qa_batch()
    trainer(QATrainer, model, tmp_path).compute_loss(model, batch)
    assert rows == [3 + 2 + 4]  # the answer tokens each predicted from the position before
    assert batch["input_ids"].numel() == 3 * 15  # what the full head would have run on
