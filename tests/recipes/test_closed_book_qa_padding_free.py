"""Padding-free QA batches (`recipes/closed_book_qa/padding_free.py`, `data.qa_features.PaddingFreeCollator`): rows
of very different lengths concatenated with restarted `position_ids` give the padded batch's loss and gradients
(1e-5), for eager, sdpa and sdpa per packed row (`packed_attention.py`) attention, GPT-2 and a Llama-shaped model;
shifting one row's positions fails that (the rows then read as one sequence); sdpa per packed row gives dense sdpa's
loss and gradients on the packed batch, running each row alone; a model whose mask ignores the restart is found by the
check and refused (`padding_free true`) or padded (`null`); padding-free batches switch sdpa (only) to sdpa per
packed row; a tiny run logs the same first five losses either way."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, masking_utils

import recipes.closed_book_qa.train as recipe
from data.labels import IGNORE_INDEX
from data.qa_features import PaddingFreeCollator, QATrainingCollator
from recipes.closed_book_qa import packed_attention
from recipes.closed_book_qa.answer_loss import answer_only_loss
from recipes.closed_book_qa.packed_attention import PACKED_ROWS_ATTENTION, packed_row_lengths
from recipes.closed_book_qa.padding_free import keeps_packed_rows_apart, training_collator
from recipes.kit.command_line import parse_config
from recipes.kit.errors import ConfigError
from tests.tiny_models import GPT2_NO_DROPOUT, decoder_config, gpt2_config

REPO = Path(__file__).resolve().parents[2]
#: Rows of 3, 17 and 40 tokens, each a prompt (no loss) then an answer (the last 1, 5 and 9 tokens).
ROWS = [(3, 1), (17, 5), (40, 9)]
VOCAB = 50


def tiny_model(family: str, attention: str) -> torch.nn.Module:
    config = gpt2_config(**GPT2_NO_DROPOUT) if family == "gpt2" else decoder_config(LlamaConfig)
    config.vocab_size = VOCAB
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attention)


def features() -> list[dict[str, list[int]]]:
    generator = torch.Generator().manual_seed(1)
    rows = []
    for length, answer in ROWS:
        ids = torch.randint(VOCAB, (length,), generator=generator).tolist()
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX] * (length - answer) + ids[length - answer :]})
    return rows


def loss_and_gradients(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    loss = answer_only_loss(model, batch, num_items_in_batch=sum(answer for _, answer in ROWS))
    loss.backward()
    return loss.detach(), [parameter.grad.clone() for parameter in model.parameters() if parameter.grad is not None]


@pytest.mark.parametrize("attention", ["eager", "sdpa", PACKED_ROWS_ATTENTION])
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_padding_free_batch_gives_the_padded_batchs_loss_and_gradients(family, attention):
    model = tiny_model(family, attention)
    padded = loss_and_gradients(model, QATrainingCollator(pad_token_id=0)(features()))
    packed_batch = PaddingFreeCollator()(features())
    assert packed_batch["input_ids"].shape == (1, sum(length for length, _ in ROWS))
    packed = loss_and_gradients(model, packed_batch)
    torch.testing.assert_close(packed[0], padded[0], rtol=1e-5, atol=1e-6)
    for got, expected in zip(packed[1], padded[1], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # Negative control: the second row's positions continue the first's, so the two rows read as one sequence.
    packed_batch["position_ids"][0, 3:20] += 3
    shifted = loss_and_gradients(model, packed_batch)
    assert not torch.allclose(shifted[0], padded[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_sdpa_per_packed_row_gives_dense_sdpas_loss_and_gradients(family, monkeypatch):
    model = tiny_model(family, "sdpa")
    packed_batch = PaddingFreeCollator()(features())
    dense = loss_and_gradients(model, packed_batch)
    model.set_attn_implementation(PACKED_ROWS_ATTENTION)
    row_lengths = []  # what each attention layer split the batch into (None: it ran dense sdpa)
    monkeypatch.setattr(
        packed_attention,
        "packed_row_lengths",
        lambda *args: row_lengths.append(lengths := packed_row_lengths(*args)) or lengths,
    )
    per_row = loss_and_gradients(model, packed_batch)
    assert row_lengths == [[length for length, _ in ROWS]] * model.config.num_hidden_layers
    torch.testing.assert_close(per_row[0], dense[0], rtol=1e-5, atol=1e-6)
    for got, expected in zip(per_row[1], dense[1], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # Negative control: the second row's positions continue the first's, so the two rows run as one.
    packed_batch["position_ids"][0, 3:20] += 3
    shifted = loss_and_gradients(model, packed_batch)
    assert row_lengths[-1] == [3 + 17, 40]
    assert not torch.allclose(shifted[0], dense[0], rtol=1e-5, atol=1e-6)


def test_sdpa_per_packed_row_runs_sdpa_on_any_other_mask():
    query = torch.randn(1, 2, 5, 4)
    positions = torch.tensor([[0, 1, 0, 1, 2]])
    rows = torch.tensor([1, 1, 2, 2, 2])
    block_causal = ((rows[:, None] == rows[None, :]).tril())[None, None]
    assert packed_row_lengths(positions, block_causal, query, query) == [2, 3]
    causal = torch.ones(5, 5, dtype=torch.bool).tril()[None, None]  # the rows read as one sequence
    assert packed_row_lengths(positions, causal, query, query) is None
    assert packed_row_lengths(positions, None, query, query) is None
    assert packed_row_lengths(torch.arange(5)[None], causal, query, query) is None  # one row
    assert packed_row_lengths(positions, block_causal, query, torch.randn(1, 2, 6, 4)) is None  # a cache


def test_padding_free_batches_switch_sdpa_only_to_sdpa_per_packed_row():
    for attention, padding_free, expected in [
        ("sdpa", None, PACKED_ROWS_ATTENTION),
        ("sdpa", False, "sdpa"),
        ("eager", None, "eager"),
    ]:
        model = tiny_model("gpt2", attention)
        training_collator(model, 0, padding_free=padding_free, do_train=True)
        assert model.config._attn_implementation == expected


def test_the_check_finds_a_mask_that_ignores_restarted_positions(monkeypatch):
    model = tiny_model("gpt2", "sdpa")
    assert keeps_packed_rows_apart(model)
    assert isinstance(training_collator(model, 0, padding_free=None, do_train=True), PaddingFreeCollator)
    monkeypatch.setattr(masking_utils, "find_packed_sequence_indices", lambda position_ids: None)
    assert not keeps_packed_rows_apart(model)
    assert isinstance(training_collator(model, 0, padding_free=None, do_train=True), QATrainingCollator)
    with pytest.raises(ConfigError, match="padding_free true: GPT2LMHeadModel .* lets packed rows attend"):
        training_collator(model, 0, padding_free=True, do_train=True)
    assert isinstance(training_collator(model, 0, padding_free=False, do_train=True), QATrainingCollator)


@pytest.mark.slow
def test_a_tiny_run_logs_the_same_first_five_losses_with_and_without_padding(tmp_path):
    """Dropout off: with dropout, the two runs draw their masks over batches of different shapes."""
    losses = {}
    for padding_free in ("false", "true"):
        output_dir = tmp_path / padding_free
        argv = [str(REPO / "recipes/closed_book_qa/configs/tiny.yaml"), "--output_dir", str(output_dir)]
        argv += ["--max_steps", "5", "--logging_steps", "1", "--do_eval", "false", "--eval_strategy", "no"]
        argv += ["--save_strategy", "no", "--padding_free", padding_free, "--config_overrides"]
        argv += ["n_embd=64,n_layer=2,n_head=2,n_positions=128,resid_pdrop=0.0,embd_pdrop=0.0,attn_pdrop=0.0"]
        recipe.main(*parse_config(*recipe.CONFIG_CLASSES, argv=argv))
        state = json.loads((output_dir / "trainer_state.json").read_text(encoding="utf-8"))
        losses[padding_free] = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses["true"]) == 5
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-4)
