"""`custom_models/transfo_xl/sampled_losses.py` is a generated copy of `custom_models/nce_lm/sampled_losses.py`.

Each model package ships flat and self-contained (trust_remote_code), so the NCE maths cannot be imported
across packages; instead, as transformers does with "Copied from", one file is the source and the copy is
checked here. After editing the source, regenerate the copy with:

    python tests/custom_models/test_sampled_losses_copy.py
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "custom_models" / "nce_lm" / "sampled_losses.py"
COPY = REPO / "custom_models" / "transfo_xl" / "sampled_losses.py"
HEADER = (
    "# Generated copy of custom_models/nce_lm/sampled_losses.py: do not edit here; edit the source, then run\n"
    "# `python tests/custom_models/test_sampled_losses_copy.py`.\n"
)


def expected_copy() -> str:
    return HEADER + SOURCE.read_text(encoding="utf-8")


def test_transfo_xl_copy_is_identical_to_the_nce_source_apart_from_its_header():
    stale = "custom_models/transfo_xl/sampled_losses.py is stale: run the command in this file's docstring"
    assert COPY.read_text(encoding="utf-8") == expected_copy(), stale


if __name__ == "__main__":
    COPY.write_text(expected_copy(), encoding="utf-8")
    print(f"wrote {COPY.relative_to(REPO)}")
