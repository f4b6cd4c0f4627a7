"""Keeps the files two model packages share equal: `python -m custom_models.check_copies [--fix]`.

Why copies: a model package ships flat and self-contained next to its weights (trust_remote_code), so a file
two packages import sits in both folders. A symbolic link would do on Linux, but a Windows checkout turns it
into a one-line text file and the package stops importing. So, as `transformers` keeps its copies honest, one
package holds the source and the other a copy of it under a `# Copied from` header. Without `--fix`,
one line per copy that differs and exit status 1 (CI, tests/custom_models/test_check_copies.py); with it, the
copies are rewritten from their sources.
"""

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (source, copy), relative to the repository root.
COPIES: tuple[tuple[str, str], ...] = (
    ("custom_models/nce_lm/sampled_losses.py", "custom_models/transfo_xl/sampled_losses.py"),
    ("custom_models/nce_lm/linear_cross_entropy.py", "custom_models/transfo_xl/linear_cross_entropy.py"),
    ("custom_models/encoder_mlp/mlp_head.py", "custom_models/bert_mlp/mlp_head.py"),
)


def expected_copy(root: Path, source: str) -> bytes:
    """The copy's whole content: the header, then the source byte for byte."""
    header = f"# Copied from {source}: edit that file, then run\n# python -m custom_models.check_copies --fix\n"
    return header.encode() + (root / source).read_bytes()


def differing(root: Path) -> list[tuple[str, str]]:
    """The (source, copy) pairs whose copy is missing or is not its source under the header."""
    return [
        (source, copy)
        for source, copy in COPIES
        if not (root / copy).is_file() or (root / copy).read_bytes() != expected_copy(root, source)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fix", action="store_true", help="rewrite each differing copy from its source")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository root (tests use a temporary one)")
    args = parser.parse_args(argv)
    stale = differing(args.root)
    for source, copy in stale:
        if args.fix:
            (args.root / copy).unlink(missing_ok=True)  # a link is replaced, never written through to its target
            (args.root / copy).write_bytes(expected_copy(args.root, source))
            print(f"{copy}: rewritten from {source}")
        else:
            print(f"{copy} differs from {source}: edit the source, then run python -m custom_models.check_copies --fix")
    return 1 if stale and not args.fix else 0


if __name__ == "__main__":
    raise SystemExit(main())
