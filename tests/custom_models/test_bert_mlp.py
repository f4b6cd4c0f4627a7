"""Tests of the BERT + MLP classifier (custom_models/bert_mlp): config checks, forward, loading a BERT
checkpoint's encoder, and the trust_remote_code round trip."""

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertForMaskedLM,
    BertModel,
    Trainer,
    TrainingArguments,
)

import custom_models  # noqa: F401  (registers the Auto classes)
from custom_models.bert_mlp import BertMLPConfig, BertMLPForSequenceClassification, masked_mean
from custom_models.bert_mlp.mlp_head import sequence_classification_loss
from tests.tiny_models import BERT_NO_DROPOUT, bert_config, bert_mlp_config

VOCAB = 60


def tiny_model(**overrides) -> BertMLPForSequenceClassification:
    torch.manual_seed(0)
    fields = dict(vocab_size=VOCAB, **BERT_NO_DROPOUT, mlp_dropout=0.0, num_labels=3, mlp_hidden_sizes=[16, 8])
    return BertMLPForSequenceClassification(bert_mlp_config(**{**fields, **overrides})).eval()


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, (3, 9), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    attention_mask[2, 3:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@pytest.mark.parametrize(
    "field, value",
    [
        ("pooling", "max"),
        ("mlp_hidden_sizes", [32, 0]),
        ("mlp_hidden_sizes", "64"),
        ("mlp_activation", "nope"),
        ("mlp_dropout", 1.0),
        ("mlp_dropout", -0.1),
    ],
)
def test_config_rejects_bad_head_field_naming_it(field, value):
    with pytest.raises(ValueError, match=field):
        BertMLPConfig(**{field: value})


def test_bert_config_loads_as_bert_mlp_config_with_head_fields(tmp_path, caplog):
    bert_config(vocab_size=VOCAB).save_pretrained(tmp_path)
    config = BertMLPConfig.from_pretrained(tmp_path, pooling="mean", num_labels=5)
    assert type(config) is BertMLPConfig and config.model_type == "bert-mlp"
    assert (config.hidden_size, config.pooling, config.num_labels, config.mlp_hidden_sizes) == (32, "mean", 5, [256])
    config.save_pretrained(tmp_path / "saved")
    assert type(AutoConfig.from_pretrained(tmp_path / "saved")) is BertMLPConfig


@pytest.mark.parametrize("pooling", ["cls", "mean", "pooler"])
def test_forward_shapes_and_cross_entropy_loss(pooling):
    model = tiny_model(pooling=pooling)
    labels = torch.tensor([0, 2, 1])
    output = model(**batch(), labels=labels)
    assert output.logits.shape == (3, 3)
    assert torch.allclose(output.loss, F.cross_entropy(output.logits, labels))
    assert ("pooler" in dict(model.bert.named_children())) == (pooling == "pooler")


def test_mean_pooling_ignores_padding():
    model = tiny_model(pooling="mean")
    inputs = batch()
    short = {key: value[2:, :3] for key, value in inputs.items()}  # row 2 without its padding
    with torch.no_grad():
        padded_logits, short_logits = model(**inputs).logits[2], model(**short).logits[0]
    torch.testing.assert_close(padded_logits, short_logits, atol=1e-5, rtol=1e-5)  # float32 sum order only
    assert torch.equal(masked_mean(torch.ones(1, 4, 2), torch.tensor([[1, 1, 0, 0]])), torch.ones(1, 2))


def test_regression_and_multi_label_losses():
    regression = tiny_model(num_labels=1)
    targets = torch.tensor([0.5, -1.0, 2.0])
    output = regression(**batch(), labels=targets)
    assert torch.allclose(output.loss, F.mse_loss(output.logits.squeeze(-1), targets))
    multi = tiny_model(problem_type="multi_label_classification")
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    output = multi(**batch(), labels=targets)
    assert torch.allclose(output.loss, F.binary_cross_entropy_with_logits(output.logits, targets))


@pytest.mark.parametrize(
    "fields, labels",
    [
        ({}, torch.tensor([0, 2, 1])),
        ({"num_labels": 1}, torch.tensor([0.5, -1.0, 2.0])),
        ({"problem_type": "multi_label_classification"}, torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0]])),
    ],
    ids=["single_label", "regression", "multi_label"],
)
def test_per_example_losses_are_each_examples_loss_and_average_to_the_batch_loss(fields, labels):
    model, inputs = tiny_model(**fields), batch()
    with torch.no_grad():
        output = model(**inputs, labels=labels)
        losses = sequence_classification_loss(output.logits, labels, model.config, reduction="none")
        alone = [model(**{k: v[i : i + 1] for k, v in inputs.items()}, labels=labels[i : i + 1]).loss for i in range(3)]
    assert losses.shape == (3,)
    # float32: the batch mean and the mean of the three differ in summation order only (~1e-7).
    torch.testing.assert_close(losses.mean(), output.loss, atol=1e-6, rtol=1e-6)
    # each example through the model alone: the same function, float32 matmuls of another shape (~1e-7).
    torch.testing.assert_close(losses, torch.stack(alone), atol=1e-6, rtol=1e-6)


def test_trainer_step_with_gradient_accumulation_follows_the_gradient_of_the_mean_loss(tmp_path):
    # Two micro-batches of 3 accumulated into one SGD step (lr 1, no clipping, no weight decay): the update must be
    # minus the gradient of the mean loss over all 6 examples. A model whose per-batch mean loss the Trainer took
    # for one already normalised over the accumulated batch (`num_items_in_batch`) would get twice that step.
    inputs = [batch(seed=0), batch(seed=1)]
    labels = [torch.tensor([0, 2, 1]), torch.tensor([1, 1, 0])]
    examples = [
        {"input_ids": ids, "attention_mask": mask, "labels": label}
        for part, label_part in zip(inputs, labels)
        for ids, mask, label in zip(part["input_ids"], part["attention_mask"], label_part)
    ]
    model = tiny_model()
    expected = tiny_model()
    loss = F.cross_entropy(torch.cat([expected(**part).logits for part in inputs]), torch.cat(labels))
    loss.backward()  # no dropout in tiny_model, so train and eval mode compute the same loss
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=3,
        gradient_accumulation_steps=2,
        max_steps=1,
        learning_rate=1.0,
        lr_scheduler_type="constant",
        optim="sgd",
        weight_decay=0.0,
        max_grad_norm=0.0,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
    )
    Trainer(model=model, args=args, train_dataset=examples).train()
    for (name, trained), reference in zip(model.named_parameters(), expected.parameters(), strict=True):
        if reference.grad is not None:  # float32 sums in another order: ~1e-7, far below a doubled step
            torch.testing.assert_close(trained, reference - reference.grad, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("checkpoint_class, prefix", [(BertModel, ""), (BertForMaskedLM, "bert.")])
@pytest.mark.parametrize("pooling", ["cls", "pooler"])
def test_loading_a_bert_checkpoint_initialises_only_the_head(tmp_path, checkpoint_class, prefix, pooling):
    torch.manual_seed(1)
    checkpoint = checkpoint_class(bert_config(vocab_size=VOCAB))
    checkpoint.save_pretrained(tmp_path)
    model, info = BertMLPForSequenceClassification.from_pretrained(
        tmp_path, num_labels=2, pooling=pooling, output_loading_info=True
    )
    saved = {k.removeprefix(prefix): v for k, v in checkpoint.state_dict().items() if k.startswith(prefix)}
    encoder = model.bert.state_dict()
    newly_initialised = {"bert." + key for key in encoder if key not in saved}  # BertForMaskedLM has no pooler
    assert set(info["missing_keys"]) - newly_initialised == {
        f"classifier.{name}" for name, _ in model.classifier.named_parameters()
    }
    assert not info["unexpected_keys"] and not info["mismatched_keys"]  # cls.* / unused pooler: ignored by design
    for key, value in encoder.items():
        if key in saved:
            assert torch.equal(value, saved[key]), key


@pytest.mark.slow
def test_save_and_load_in_clean_process_gives_identical_logits(tmp_path, forward_in_clean_process):
    model = tiny_model(pooling="mean", id2label={0: "neg", 1: "neutral", 2: "pos"})
    model.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "modeling_bert_mlp.py").is_file()
    inputs = batch()
    with torch.no_grad():
        expected = model(**inputs).logits
    got = forward_in_clean_process(tmp_path / "model", "AutoModelForSequenceClassification", inputs)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)  # same weights, same ops, same machine: bit-identical
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    assert type(reloaded) is BertMLPForSequenceClassification and reloaded.config.id2label[2] == "pos"
