"""Converting a transformers 4.x Transformer-XL folder (`convert_legacy`): the vocabulary pickle is read
without running code, and the converted folder reproduces 4.34.1 in a process that cannot import this repo.

Fixture: `tests/fixtures/transfo_xl/legacy` (a tiny wt103-like adaptive model made and run by transformers
4.34.1, with a synthetic vocabulary; see tests/fixtures/transfo_xl/README.md). Tolerance for log-probabilities:
1e-4, as for the non-adaptive reference; float32 rounding between two implementations of the same sums is
~1e-6 here, and a wrong cluster, projection or memory moves log-probabilities by 0.1 or more.
"""

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from custom_models.transfo_xl.convert_legacy import UnsafePickleError, convert, main, read_legacy_vocab

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "transfo_xl" / "legacy"
LEGACY = FIXTURE / "legacy_checkpoint"
SEGMENT = 8  # the fixture ran three segments of 8, the first with no memory
FORBIDDEN = f"{os.system.__module__}.system"  # "posix.system" on Linux
DROP = object()  # marks a key to remove from a vocabulary dict


class RunsCodeWhenUnpickled:
    """What a malicious vocab.pkl holds: unpickling it calls os.system("touch <marker>")."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def legacy_copy(folder: Path) -> Path:
    """A writable copy of the fixture's 4.x folder (the fixture itself is read-only)."""
    folder.mkdir(parents=True)
    for source in LEGACY.iterdir():
        shutil.copyfile(source, folder / source.name)
    return folder


def write_vocab(obj, path: Path, fmt: str) -> None:
    """Writes `obj` as torch.save's legacy (pre-zip) format, as its zip format, or as a plain pickle."""
    if fmt == "plain pickle":
        path.write_bytes(pickle.dumps(obj, protocol=2))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip torch.save")


# --------------------------------------------------------------------------------------------------
# The vocabulary pickle
# --------------------------------------------------------------------------------------------------


def test_the_malicious_payload_runs_code_when_unpickled_naively(tmp_path):
    # Shows that the refusal tests below use a live payload: a plain pickle.loads runs it.
    marker = tmp_path / "MARKER"
    pickle.loads(pickle.dumps(RunsCodeWhenUnpickled(marker)))
    assert marker.exists()


@pytest.mark.parametrize("fmt", ["legacy torch.save", "zip torch.save", "plain pickle"])
def test_converter_refuses_a_vocab_that_would_run_code_and_runs_nothing(tmp_path, fmt):
    marker = tmp_path / "MARKER"
    source = legacy_copy(tmp_path / "legacy")
    vocab = read_legacy_vocab(LEGACY / "vocab.pkl")
    write_vocab({**vocab, "counter": RunsCodeWhenUnpickled(marker)}, source / "vocab.pkl", fmt)

    with pytest.raises(UnsafePickleError, match=rf"vocab\.pkl: refusing the global {FORBIDDEN}\b"):
        convert(source, tmp_path / "converted")
    assert not marker.exists()
    assert not (tmp_path / "converted").exists()


def test_read_legacy_vocab_returns_the_original_vocab_dict():
    vocab = read_legacy_vocab(LEGACY / "vocab.pkl")
    config = json.loads((LEGACY / "config.json").read_text())
    assert len(vocab["idx2sym"]) == config["vocab_size"] == 1000
    assert vocab["idx2sym"][0] == "<eos>" and vocab["eos_idx"] == 0 and vocab["special"] == ["<eos>"]
    assert "<unk>" in vocab["sym2idx"] and "<unk>" not in vocab["special"]  # an ordinary word of the corpus
    assert vocab["lower_case"] is False
    assert type(vocab["sym2idx"]).__name__ == "OrderedDict" and type(vocab["counter"]).__name__ == "Counter"
    assert all(vocab["sym2idx"][word] == i for i, word in enumerate(vocab["idx2sym"]))


@pytest.mark.parametrize("fmt", ["zip torch.save", "plain pickle"])
def test_read_legacy_vocab_reads_the_other_formats_alike(tmp_path, fmt):
    vocab = read_legacy_vocab(LEGACY / "vocab.pkl")
    write_vocab(vocab, tmp_path / "vocab.pkl", fmt)
    assert read_legacy_vocab(tmp_path / "vocab.pkl") == vocab


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sym2idx": {}}, "sym2idx is not the inverse of idx2sym"),
        ({"idx2sym": ["<eos>", 3]}, "idx2sym must be a list of strings"),
        ({"lower_case": "no"}, "lower_case must be a bool"),
        ({"lower_case": DROP}, "expected a Vocab.__dict__ with idx2sym, sym2idx and lower_case"),
    ],
)
def test_read_legacy_vocab_rejects_a_malformed_vocab_naming_the_file(tmp_path, change, message):
    vocab = {
        key: value for key, value in {**read_legacy_vocab(LEGACY / "vocab.pkl"), **change}.items() if value is not DROP
    }
    write_vocab(vocab, tmp_path / "vocab.pkl", "legacy torch.save")
    with pytest.raises(ValueError, match=rf"vocab\.pkl: {message}"):
        read_legacy_vocab(tmp_path / "vocab.pkl")


# --------------------------------------------------------------------------------------------------
# The converted folder
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    return convert(LEGACY, tmp_path_factory.mktemp("converted") / "txl")


def test_converted_folder_holds_safetensors_code_and_tokenizer_but_no_pickle(converted):
    names = {path.name for path in converted.iterdir()}
    expected = {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "README.md",
        "modeling_transfo_xl.py",
        "configuration_transfo_xl.py",
    }
    assert expected <= names, sorted(names)
    assert not [name for name in names if name.endswith((".pkl", ".bin", ".pt", ".pth"))], sorted(names)
    assert "convert_legacy.py" not in names  # the CLI is not model code
    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "transformer-xl"
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_transfo_xl.TransformerXLForCausalLM"
    assert str(LEGACY.resolve()) in (converted / "README.md").read_text()  # provenance


def test_converted_tokenizer_maps_every_fixture_line_to_the_legacy_ids(converted):
    tokenizer = AutoTokenizer.from_pretrained(converted)
    for case in json.loads((FIXTURE / "tokenizer_cases.json").read_text()):
        assert tokenizer(case["text"])["input_ids"] == case["ids"], case["text"]


# Runs in a process that cannot import this repository: the tokenizer and the model must load from the folder.
_CLEAN_PROCESS_SCRIPT = """
import json, sys, torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, fixture, segment, out_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # as the model card says
cases = json.load(open(f"{fixture}/tokenizer_cases.json"))
assert [tokenizer(case["text"])["input_ids"] for case in cases] == [case["ids"] for case in cases]
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
input_ids = load_file(f"{fixture}/input_ids.safetensors")["input_ids"]
log_probs, mems = [], None
with torch.no_grad():
    for start in range(0, input_ids.shape[1], segment):
        out = model(input_ids[:, start : start + segment], mems=mems)
        log_probs.append(out.logits)
        mems = out.mems
    generated = model.generate(input_ids[:, :4], max_new_tokens=3, do_sample=False)
assert generated.shape == (2, 7), generated.shape
save_file({"log_probs": torch.cat(log_probs, dim=1)}, out_file)
"""


@pytest.mark.slow
def test_converted_folder_reproduces_4x_log_probs_in_a_clean_process(converted, tmp_path, clean_process):
    out_file = tmp_path / "log_probs.safetensors"
    clean_process(_CLEAN_PROCESS_SCRIPT, str(converted), str(FIXTURE), str(SEGMENT), str(out_file), cwd=tmp_path)
    expected = load_file(FIXTURE / "reference.safetensors")["log_probs"]
    torch.testing.assert_close(load_file(out_file)["log_probs"], expected, atol=1e-4, rtol=0)


def test_lower_cased_vocabulary_lowercases_input(tmp_path, converted):
    source = legacy_copy(tmp_path / "legacy")
    vocab = read_legacy_vocab(LEGACY / "vocab.pkl")
    write_vocab({**vocab, "lower_case": True}, source / "vocab.pkl", "legacy torch.save")
    lowered = AutoTokenizer.from_pretrained(convert(source, tmp_path / "converted"))
    one, two = [word for word in vocab["idx2sym"] if word.isalpha() and word.islower() and len(word) > 1][:2]
    text = f"{one.upper()} {two.upper()} {one}"
    assert one.upper() not in vocab["sym2idx"] and two.upper() not in vocab["sym2idx"]
    ids = {word: vocab["sym2idx"][word] for word in (one, two, "<unk>")}
    assert lowered(text)["input_ids"] == [ids[one], ids[two], ids[one]]
    assert AutoTokenizer.from_pretrained(converted)(text)["input_ids"] == [ids["<unk>"], ids["<unk>"], ids[one]]


def test_hub_source_is_downloaded_at_the_asked_revision(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(*, repo_id, revision, allow_patterns):  # the Hub boundary only
        calls.append((repo_id, revision, allow_patterns))
        return str(legacy_copy(tmp_path / "hub_cache" / "snapshots" / "0123abc"))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    destination = convert("someone/transfo-xl-tiny", tmp_path / "converted", revision="v1")
    assert calls == [
        ("someone/transfo-xl-tiny", "v1", ["config.json", "pytorch_model.bin", "model.safetensors", "vocab.pkl"])
    ]
    card = (destination / "README.md").read_text()
    assert "`someone/transfo-xl-tiny`" in card and "revision `v1`, commit `0123abc`" in card


@pytest.mark.slow
def test_push_to_hub_uploads_a_folder_that_loads_in_a_clean_process(tmp_path, local_hub, forward_in_clean_process):
    repo_id = "someone/transfo-xl-tiny"
    main([str(LEGACY), str(tmp_path / "converted"), "--push_to_hub", repo_id])
    assert [call[:2] for call in local_hub.calls] == [("create_repo", repo_id), ("upload_folder", repo_id)]
    remote = local_hub.repo(repo_id)
    local_files = {p.relative_to(tmp_path / "converted"): p.read_bytes() for p in (tmp_path / "converted").rglob("*")}
    assert {p.relative_to(remote): p.read_bytes() for p in remote.rglob("*")} == local_files
    assert f'from_pretrained("{repo_id}"' in (remote / "README.md").read_text()

    input_ids = load_file(FIXTURE / "input_ids.safetensors")["input_ids"][:, :SEGMENT]
    log_probs = forward_in_clean_process(remote, "AutoModelForCausalLM", {"input_ids": input_ids})
    expected = load_file(FIXTURE / "reference.safetensors")["log_probs"][:, :SEGMENT]  # first segment: no memory
    torch.testing.assert_close(log_probs, expected, atol=1e-4, rtol=0)


def test_converted_weights_equal_the_legacy_ones(converted):
    # The conversion copies tensors; it does not re-initialise or round anything (tied copies dropped).
    legacy = torch.load(LEGACY / "pytorch_model.bin", weights_only=True)
    saved = load_file(converted / "model.safetensors")
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, legacy[name], atol=0, rtol=0, msg=name)
