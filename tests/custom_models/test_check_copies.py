"""`python -m custom_models.check_copies`: the repository's copies agree with their sources, an edit to either
side is reported (exit 1, naming the copy) and `--fix` restores the copy byte for byte; no model file is a
symbolic link (a Windows checkout turns one into a one-line text file)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from custom_models.check_copies import COPIES, ROOT, main


def test_the_repository_copies_agree_with_their_sources():
    result = subprocess.run(
        [sys.executable, "-m", "custom_models.check_copies"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_no_tracked_file_under_custom_models_is_a_symbolic_link():
    listing = subprocess.run(
        ["git", "ls-files", "-s", "custom_models"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert listing and not [line for line in listing.splitlines() if line.startswith("120000 ")], listing


def copy_shared_files(root: Path) -> None:
    """Every source and copy, under `root` as in the repository: a check there sees only what a test edits."""
    for path in {path for pair in COPIES for path in pair}:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / path, root / path)


@pytest.mark.parametrize("edited", ["copy", "source"])
@pytest.mark.parametrize(("source", "copy"), COPIES)
def test_an_edit_is_reported_and_fix_makes_the_copy_its_source_again(tmp_path, capsys, source, copy, edited):
    copy_shared_files(tmp_path)
    edited_path = tmp_path / (copy if edited == "copy" else source)
    edited_path.write_bytes(edited_path.read_bytes() + b"# edited\n")
    header = (ROOT / copy).read_bytes()[: -len((ROOT / source).read_bytes())]
    assert header.startswith(f"# Copied from {source}: ".encode())

    assert main(["--root", str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{copy} differs from {source}: edit the source, then run python -m custom_models.check_copies --fix"
    ]
    assert main(["--root", str(tmp_path), "--fix"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{copy}: rewritten from {source}"]
    assert (tmp_path / copy).read_bytes() == header + (tmp_path / source).read_bytes()
    if edited == "copy":
        assert (tmp_path / copy).read_bytes() == (ROOT / copy).read_bytes()
    assert main(["--root", str(tmp_path)]) == 0 and capsys.readouterr().out == ""


def test_fix_replaces_a_symbolic_link_left_by_an_old_checkout_and_leaves_its_source_alone(tmp_path):
    copy_shared_files(tmp_path)
    source, copy = COPIES[0]
    (tmp_path / copy).unlink()
    (tmp_path / copy).symlink_to(tmp_path / source)
    assert main(["--root", str(tmp_path)]) == 1
    assert main(["--root", str(tmp_path), "--fix"]) == 0
    assert not (tmp_path / copy).is_symlink() and (tmp_path / copy).read_bytes() == (ROOT / copy).read_bytes()
    assert (tmp_path / source).read_bytes() == (ROOT / source).read_bytes()
