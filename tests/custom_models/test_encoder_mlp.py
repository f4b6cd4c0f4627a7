"""Tests of the any-encoder + MLP classifier (custom_models/encoder_mlp): the config's sub-config and checks,
each named encoder family with each of its poolings, loading a pretrained encoder, training through the
sentiment recipe and loading the saved folder in a process that never imported this repository."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, BertConfig

import custom_models  # noqa: F401  (registers the Auto classes)
from custom_models.bert_mlp import BertMLPConfig, BertMLPForSequenceClassification
from custom_models.encoder_mlp import EncoderMLPConfig, EncoderMLPForSequenceClassification, encoder_has_pooler
from recipes.kit.command_line import parse_config
from recipes.sentiment.train import CONFIG_CLASSES, main
from tests.conftest import run_in_clean_process, sentiment_tokenizer_dir

REPO = Path(__file__).resolve().parents[2]
VOCAB = 274  # the size of the sentiment recipe's WordPiece (`sentiment_tokenizer_dir`); its [PAD] is id 0
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
#: A tiny encoder of each family (hidden 32, 2 layers), in each config class's own field names.
FAMILIES = {
    "bert": NO_DROPOUT,
    "roberta": NO_DROPOUT,
    "xlm-roberta": NO_DROPOUT,
    "electra": {"embedding_size": 32, **NO_DROPOUT},
    "distilbert": {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64, "dropout": 0.0, "attention_dropout": 0.0},
    # DeBERTa-v3's attention: relative positions in buckets, content-to-position both ways, shared keys.
    "deberta-v2": {
        "relative_attention": True,
        "position_buckets": 32,
        "pos_att_type": ["p2c", "c2p"],
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "position_biased_input": False,
        **NO_DROPOUT,
    },
    "modernbert": {
        "local_attention": 16,
        "global_attn_every_n_layers": 2,
        "embedding_dropout": 0.0,
        **{"cls_token_id": 2, "sep_token_id": 3, "bos_token_id": 2, "eos_token_id": 3},  # the sentiment tokenizer's
    },
}
SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def tiny_encoder_config(family: str):
    sizes = {} if family == "distilbert" else SIZES  # DistilBERT's names are its own (dim, n_layers, ...)
    # RoBERTa-style position ids start after the padding id: room for 64 tokens and the offset.
    return AutoConfig.for_model(
        family, vocab_size=VOCAB, pad_token_id=0, max_position_embeddings=80, **sizes, **FAMILIES[family]
    )


def tiny_model(family: str, pooling: str = "cls") -> EncoderMLPForSequenceClassification:
    torch.manual_seed(0)
    config = EncoderMLPConfig(
        encoder=tiny_encoder_config(family), pooling=pooling, num_labels=3, mlp_hidden_sizes=[16], mlp_dropout=0.0
    )
    return EncoderMLPForSequenceClassification(config).eval()


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, (3, 9), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    attention_mask[2, 3:] = 0
    return {"input_ids": input_ids.masked_fill(attention_mask == 0, 0), "attention_mask": attention_mask}


def poolings(family: str) -> list[str]:
    return ["cls", "mean", "pooler"] if encoder_has_pooler(tiny_encoder_config(family)) else ["cls", "mean"]


def test_families_with_a_pooler_are_the_bert_like_ones():
    with_pooler = {family for family in FAMILIES if encoder_has_pooler(tiny_encoder_config(family))}
    assert with_pooler == {"bert", "roberta", "xlm-roberta"}


@pytest.mark.parametrize("family, pooling", [(f, p) for f in FAMILIES for p in poolings(f)])
def test_forward_shapes_loss_and_pooler_only_when_used(family, pooling):
    model = tiny_model(family, pooling)
    labels = torch.tensor([0, 2, 1])
    # token_type_ids, as a BERT tokenizer returns them: encoders without segments (DistilBERT, ModernBERT) ignore them
    output = model(**batch(), token_type_ids=torch.zeros(3, 9, dtype=torch.long), labels=labels)
    assert output.logits.shape == (3, 3)
    assert torch.allclose(output.loss, F.cross_entropy(output.logits, labels))
    assert (getattr(model.encoder, "pooler", None) is not None) == (pooling == "pooler")
    assert type(model.encoder) is type(AutoModel.from_config(model.config.encoder))


@pytest.mark.parametrize("family", FAMILIES)
def test_mean_pooling_ignores_padding(family):
    model = tiny_model(family, "mean")
    inputs = batch()
    short = {key: value[2:, :3] for key, value in inputs.items()}  # row 2 without its padding
    with torch.no_grad():
        padded_logits, short_logits = model(**inputs).logits[2], model(**short).logits[0]
    torch.testing.assert_close(padded_logits, short_logits, atol=1e-5, rtol=1e-5)  # float32 sum order only


def test_pooler_is_refused_for_an_encoder_without_one():
    with pytest.raises(ValueError, match="pooling 'pooler': a 'distilbert' encoder has none"):
        EncoderMLPConfig(encoder=tiny_encoder_config("distilbert"), pooling="pooler")


@pytest.mark.parametrize("field, value", [("pooling", "max"), ("mlp_hidden_sizes", [32, 0]), ("mlp_dropout", 1.0)])
def test_config_rejects_bad_head_field_naming_it(field, value):
    with pytest.raises(ValueError, match=field):
        EncoderMLPConfig(**{field: value})


def test_with_fields_sets_head_fields_here_and_the_others_in_the_encoder():
    config = EncoderMLPConfig(encoder=tiny_encoder_config("roberta")).with_fields(
        pooling="mean", num_labels=4, hidden_dropout_prob=0.3, vocab_size=99
    )
    assert (config.pooling, config.num_labels, config.encoder.hidden_dropout_prob) == ("mean", 4, 0.3)
    assert (config.encoder.model_type, config.encoder.vocab_size, config.encoder.hidden_size) == ("roberta", 99, 32)
    with pytest.raises(ValueError, match=r"EncoderMLPConfig and its RobertaConfig have no field\(s\) \['n_embd'\]"):
        config.with_fields(n_embd=32)


def test_config_round_trips_with_the_encoder_config_inside(tmp_path):
    tiny_model("deberta-v2", "mean").save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "encoder-mlp" and saved["encoder"]["model_type"] == "deberta-v2"
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is EncoderMLPConfig and config.encoder.to_dict() == tiny_encoder_config("deberta-v2").to_dict()


@pytest.mark.parametrize("family", ["bert", "electra"])
def test_from_encoder_pretrained_reads_any_save_of_the_encoder_and_initialises_only_the_head(tmp_path, family):
    """From a masked-LM save (keys under `bert.` / `electra.` plus an LM head), the encoder's weights arrive
    unchanged, under `encoder.`; nothing of the checkpoint is lost or left random."""
    from transformers import AutoModelForMaskedLM

    torch.manual_seed(1)
    AutoModelForMaskedLM.from_config(tiny_encoder_config(family)).save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    encoder = {key.removeprefix(f"{family}."): value for key, value in saved.items() if key.startswith(f"{family}.")}
    model = EncoderMLPForSequenceClassification.from_encoder_pretrained(tmp_path, num_labels=2, pooling="mean")
    assert model.config.encoder.model_type == family and model.config.num_labels == 2
    loaded = model.encoder.state_dict()
    assert loaded.keys() == encoder.keys()  # no pooler (mean pooling), nothing missing
    for key, value in encoder.items():
        assert torch.equal(loaded[key], value), key


def tiny_run_args(output_dir: Path, encoder_dir: Path, *flags: str) -> tuple:
    """tiny.yaml on `encoder_dir`'s encoder, 3 training steps, with the sentiment recipe's tokenizer."""
    return parse_config(
        *CONFIG_CLASSES,
        argv=[
            str(REPO / "recipes" / "sentiment" / "configs" / "tiny.yaml"),
            "--model_name_or_path",
            str(encoder_dir),
            "--tokenizer_name",
            str(sentiment_tokenizer_dir()),
            "--config_overrides",
            "",
            "--output_dir",
            str(output_dir),
            "--max_steps",
            "3",
            "--max_eval_samples",
            "16",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--load_best_model_at_end",
            "false",
            *flags,
        ],
    )


SENTENCES = ["the acting was thrilling", "the dialogue was lifeless"]

# Loads every trained folder once, in one clean process: the shipped code's logits on SENTENCES and what
# pipeline("text-classification") says about them.
_LOAD_ALL_SCRIPT = """
import json, sys, torch, transformers
from safetensors.torch import save_file
folders, sentences, out_dir = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
report = {}
for family, folder in folders.items():
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    with torch.no_grad():
        logits = model(**tokenizer(sentences, padding=True, return_tensors="pt")).logits
    save_file({"logits": logits}, f"{out_dir}/{family}.safetensors")
    classify = transformers.pipeline("text-classification", model=folder, trust_remote_code=True)
    report[family] = {"module": type(model).__module__, "predictions": classify(sentences)}
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def trained_families(tmp_path_factory):
    """Each family's tiny encoder saved as a plain `AutoModel` checkpoint, trained 3 steps through the
    sentiment recipe, and loaded back in one clean process: {family: (encoder_dir, output_dir, clean_report)}."""
    root = tmp_path_factory.mktemp("families")
    folders = {}
    for family in FAMILIES:
        torch.manual_seed(0)
        AutoModel.from_config(tiny_encoder_config(family)).save_pretrained(root / family / "encoder")
        main(*tiny_run_args(root / family / "out", root / family / "encoder", "--pooling", poolings(family)[-1]))
        folders[family] = str(root / family / "out")
    result = run_in_clean_process(_LOAD_ALL_SCRIPT, json.dumps(folders), json.dumps(SENTENCES), str(root), cwd=root)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return root, report


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_trains_saves_and_classifies_in_a_clean_process(trained_families, family):
    """3 steps of tiny.yaml on a tiny `AutoModel` checkpoint of `family` (with the pooler where it has one): the
    folder's config names the family's encoder, every encoder tensor moved from the checkpoint's, and a process
    that cannot import this repository loads the shipped code, computes the same logits and classifies."""
    root, report = trained_families
    out = root / family / "out"
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["encoder"]["model_type"]) == ("encoder-mlp", family)
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    before = load_file(root / family / "encoder" / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert {f"encoder.{key}" for key in before} <= after.keys()
    frozen = [
        key for key, value in before.items() if key.endswith("weight") and torch.equal(after[f"encoder.{key}"], value)
    ]
    assert not [key for key in frozen if "embeddings" not in key and "rel_embeddings" not in key], frozen  # trained

    assert report[family]["module"].startswith("transformers_modules")  # the folder's own code, not this repo's
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        expected = model(**tokenizer(SENTENCES, padding=True, return_tensors="pt")).logits
    got = load_file(root / f"{family}.safetensors")["logits"]
    torch.testing.assert_close(got, expected, atol=0, rtol=0)  # same weights and ops on one machine
    predictions = report[family]["predictions"]
    expected_labels = [model.config.id2label[i] for i in expected.argmax(-1).tolist()]
    assert [p["label"] for p in predictions] == expected_labels
    assert all(0.5 <= p["score"] <= 1.0 for p in predictions)  # the top class of two


def old_bert_mlp_folder(folder: Path) -> Path:
    """A classifier as `bert-mlp` saves it (config `model_type: bert-mlp`, weights under `bert.` and
    `classifier.`, its own code beside them), on the sentiment recipe's tokenizer."""
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    bert = BertConfig(vocab_size=VOCAB, max_position_embeddings=80, **SIZES, **NO_DROPOUT)
    labels = {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}
    config = BertMLPConfig(**{**bert.to_dict(), "mlp_hidden_sizes": [16], "pooling": "mean", **labels})
    BertMLPForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(sentiment_tokenizer_dir()).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_an_old_bert_mlp_folder_evaluates_and_trains_on_through_the_recipe(tmp_path):
    old = old_bert_mlp_folder(tmp_path / "old")
    model = AutoModelForSequenceClassification.from_pretrained(old)
    assert type(model) is BertMLPForSequenceClassification
    evaluated = main(*tiny_run_args(tmp_path / "eval", old, "--do_train", "false", "--tokenizer_name", str(old)))
    assert 0.0 <= evaluated["eval_accuracy"] <= 1.0
    main(*tiny_run_args(tmp_path / "more", old, "--use_lora", "true", "--lora_r", "2", "--mlp_hidden_sizes", "16"))
    before, after = load_file(old / "model.safetensors"), load_file(tmp_path / "more" / "model.safetensors")
    assert json.loads((tmp_path / "more" / "config.json").read_text())["model_type"] == "bert-mlp"
    changed = {key for key, value in after.items() if not torch.equal(value, before[key])}
    projections = {
        f"bert.encoder.layer.{i}.attention.self.{m}.weight" for i in range(2) for m in ("query", "key", "value")
    }
    head = {key for key in before if key.startswith("classifier.")}
    assert changed == projections | head  # LoRA on BERT's projections (merged), the head trained from the old one
