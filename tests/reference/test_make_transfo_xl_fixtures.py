"""The committed Transformer-XL fixtures are the files their meta.json describes, and `--check`'s comparison
tells a reproduced fixture from a changed one (the generation itself needs the 4.34.1 side environment and
is not run here)."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.reference.make_transfo_xl_fixtures import FIXTURES, FOLDERS, compare_folders


@pytest.mark.parametrize("folder", FOLDERS)
def test_committed_fixture_files_match_their_recorded_sha256(folder):
    recorded = json.loads((FIXTURES / folder / "meta.json").read_text())["sha256"]
    files = {str(p.relative_to(FIXTURES / folder)) for p in (FIXTURES / folder).rglob("*") if p.is_file()}
    assert files - {"meta.json"} == recorded.keys()
    for name, digest in recorded.items():
        assert hashlib.sha256((FIXTURES / folder / name).read_bytes()).hexdigest() == digest, name


@pytest.fixture
def copies(tmp_path) -> tuple[Path, Path]:
    committed, regenerated = tmp_path / "committed", tmp_path / "regenerated"
    shutil.copytree(FIXTURES / "legacy", committed)
    shutil.copytree(FIXTURES / "legacy", regenerated)
    return committed, regenerated


def test_identical_folders_compare_as_same_bytes(copies):
    rows = compare_folders(*copies)
    assert [name for name, _ in rows] == sorted(str(p.relative_to(copies[0])) for p in copies[0].rglob("*.*"))
    assert {verdict for _, verdict in rows} == {"same bytes"}


def test_a_legacy_checkpoint_saved_again_compares_as_same_content(copies):
    weights = copies[1] / "legacy_checkpoint" / "pytorch_model.bin"
    torch.save(torch.load(weights, weights_only=True), weights)  # zip format: other bytes, same tensors
    verdicts = dict(compare_folders(*copies))
    assert verdicts["legacy_checkpoint/pytorch_model.bin"] == "same content (bytes vary)"


def test_a_tensor_changed_by_one_float_step_is_reported_with_its_name(copies):
    path = copies[1] / "reference.safetensors"
    tensors = load_file(path)
    tensors["log_probs"][1, 23, 999] = torch.nextafter(tensors["log_probs"][1, 23, 999], torch.tensor(0.0))
    save_file(tensors, path)
    verdict = dict(compare_folders(*copies))["reference.safetensors"]
    assert verdict.startswith("DIFFERS: log_probs: max abs diff"), verdict


def test_a_missing_file_and_a_changed_vocabulary_are_reported(copies):
    (copies[1] / "tokenizer_cases.json").unlink()
    vocab = copies[1] / "legacy_checkpoint" / "vocab.pkl"
    vocab.write_bytes(vocab.read_bytes().replace(b"<unk>", b"<UNK>"))
    verdicts = dict(compare_folders(*copies))
    assert verdicts["tokenizer_cases.json"] == "MISSING in the regenerated files"
    assert verdicts["legacy_checkpoint/vocab.pkl"] == "DIFFERS: vocabulary differs"
