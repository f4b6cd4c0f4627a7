"""Writes the Transformer-XL reference fixtures into tests/fixtures/transfo_xl/, or checks the committed ones.

    python tests/reference/make_transfo_xl_fixtures.py --install_reference          # (re)write them
    python tests/reference/make_transfo_xl_fixtures.py --install_reference --check  # regenerate, compare

Why: transformers 5.x has no Transformer-XL, so our model is checked against what transformers 4.34.1's
`TransfoXLLMHeadModel` computes on tiny random models; those numbers are committed so that every clone runs
the reference tests. This script builds the side environment (`custom_models.reference_env`: our torch
release, then `transformers==4.34.1`, in `~/.cache/finetune-recipes/`), runs `transfo_xl_4x_outputs.py` in it
(which writes both fixture folders into a temporary directory), then either replaces
`tests/fixtures/transfo_xl/{reference,legacy}` with them or, with `--check`, compares them with the committed
files and prints one row per file. CI does not run it (it needs the side environment: minutes to build).

What `--check` demands of each file: the same bytes, or, where bytes legitimately vary, the same content.
`pytorch_model.bin` is written in torch's legacy format, which names each storage by its memory address, so
its bytes (and its sha256 in meta.json) change from run to run: its tensors are compared instead, and
meta.json without the sha256 table. Every tensor must be bit-equal: all of it is seeded and computed in
float32 on one CPU thread, and reruns on one machine reproduce every bit; another CPU may pick other kernels,
and a float difference then shows in the table's max abs diff column (the tests allow 1e-4).
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from custom_models.reference_env import default_reference_python, ensure_reference
from custom_models.transfo_xl.convert_legacy import read_legacy_vocab

REFERENCE_VERSION = "4.34.1"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "transfo_xl"
FOLDERS = ("reference", "legacy")
GENERATOR = Path(__file__).resolve().with_name("transfo_xl_4x_outputs.py")


def generate(python: Path, output_dir: Path) -> None:
    """Runs the generator in the 4.x interpreter `python`, writing `output_dir/{reference,legacy}`.

    Raises:
        RuntimeError: the generator failed (the end of its stderr is in the message).
    """
    done = subprocess.run([str(python), str(GENERATOR), str(output_dir)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{GENERATOR.name} failed: {done.stderr.strip()[-2000:]}")


def tensor_difference(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> str | None:
    """None when both hold the same names, dtypes, shapes and bits; otherwise what differs first."""
    if expected.keys() != got.keys():
        return f"names differ: {sorted(expected.keys() ^ got.keys())}"
    for name, tensor in expected.items():
        other = got[name]
        if tensor.dtype != other.dtype or tensor.shape != other.shape:
            return f"{name}: {other.dtype} {list(other.shape)} instead of {tensor.dtype} {list(tensor.shape)}"
        if not torch.equal(tensor, other):
            diff = (tensor.double() - other.double()).abs().max().item()
            return f"{name}: max abs diff {diff:.3g}"
    return None


def content_difference(expected: Path, got: Path) -> str | None:
    """Compares two versions of one fixture file by what it holds; None when equal, else what differs."""
    if expected.suffix == ".safetensors":
        return tensor_difference(load_file(expected), load_file(got))
    if expected.suffix == ".bin":
        return tensor_difference(torch.load(expected, weights_only=True), torch.load(got, weights_only=True))
    if expected.suffix == ".pkl":
        return None if read_legacy_vocab(expected) == read_legacy_vocab(got) else "vocabulary differs"
    if expected.name == "meta.json":  # its sha256 table follows the bytes of pytorch_model.bin
        old, new = (json.loads(path.read_text()) for path in (expected, got))
        old.pop("sha256"), new.pop("sha256")
        return None if old == new else "meta.json differs beyond its sha256 table"
    return "bytes differ"


def compare_folders(committed: Path, regenerated: Path) -> list[tuple[str, str]]:
    """One (file, verdict) row per file of either folder; a verdict starting "DIFFERS" or "MISSING" fails.

    Args:
        committed: the fixture folder in the repository.
        regenerated: the same folder freshly written by the generator.
    Returns:
        rows sorted by relative path; verdicts: "same bytes", "same content (bytes vary)", "DIFFERS: ...",
        "MISSING in ..." (a file only one side has).
    """
    names = {p.relative_to(folder) for folder in (committed, regenerated) for p in folder.rglob("*") if p.is_file()}
    rows = []
    for name in sorted(names):
        old, new = committed / name, regenerated / name
        if not (old.is_file() and new.is_file()):
            rows.append((str(name), f"MISSING in {'the repository' if new.is_file() else 'the regenerated files'}"))
        elif old.read_bytes() == new.read_bytes():
            rows.append((str(name), "same bytes"))
        else:
            why = content_difference(old, new)
            rows.append((str(name), f"DIFFERS: {why}" if why else "same content (bytes vary)"))
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--reference_python",
        type=Path,
        default=default_reference_python(REFERENCE_VERSION),
        help=f"interpreter with transformers {REFERENCE_VERSION}",
    )
    parser.add_argument(
        "--install_reference",
        action="store_true",
        help=f"build that venv if missing: our torch release, then transformers=={REFERENCE_VERSION}",
    )
    parser.add_argument("--check", action="store_true", help="compare with the committed files; write nothing")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    check = "from transformers import TransfoXLLMHeadModel"
    why = ensure_reference(args.reference_python, REFERENCE_VERSION, install=args.install_reference, check=check)
    if why:
        sys.exit(f"no transformers {REFERENCE_VERSION}: {why}")
    with tempfile.TemporaryDirectory() as scratch:
        generate(args.reference_python, Path(scratch))
        if not args.check:
            for folder in FOLDERS:
                shutil.rmtree(FIXTURES / folder, ignore_errors=True)
                shutil.copytree(Path(scratch) / folder, FIXTURES / folder, copy_function=shutil.copyfile)
            print(f"wrote {', '.join(str(FIXTURES / folder) for folder in FOLDERS)}")
            return
        rows = [
            (f"{f}/{name}", verdict)
            for f in FOLDERS
            for name, verdict in compare_folders(FIXTURES / f, Path(scratch) / f)
        ]
    print("| file | regenerated vs committed |\n|---|---|")
    print("\n".join(f"| {name} | {verdict} |" for name, verdict in rows))
    failed = [name for name, verdict in rows if verdict.startswith(("DIFFERS", "MISSING"))]
    sys.exit(f"{len(failed)} file(s) not reproduced: {', '.join(failed)}" if failed else 0)


if __name__ == "__main__":
    main()
