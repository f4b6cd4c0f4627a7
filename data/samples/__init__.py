"""Small data sets this project writes itself (see `make_samples.py`), for the quick start and tests."""

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent
