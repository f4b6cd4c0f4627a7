"""Test-wide settings: never touch the network (set before huggingface_hub is imported)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

# Makes the child process unable to import this repository: a model that loads there does so from
# the code shipped in its folder (trust_remote_code), not from our packages.
_BLOCK_PROJECT_IMPORTS = textwrap.dedent(
    """
    import sys, importlib.abc
    class _BlockProject(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"custom_models", "data", "recipes"}:
                raise ImportError(f"{name} must not be imported in a clean process")
            return None
    sys.meta_path.insert(0, _BlockProject())
    """
)

_FORWARD_SCRIPT = textwrap.dedent(
    """
    import sys, torch, transformers
    from safetensors.torch import load_file, save_file
    model_dir, auto_class, inputs_file, output_name, out_file = sys.argv[1:]
    model = getattr(transformers, auto_class).from_pretrained(model_dir, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    with torch.no_grad():
        output = model(**load_file(inputs_file))
    save_file({"output": getattr(output, output_name).contiguous()}, out_file)
    """
)


def run_in_clean_process(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Runs `script` in a fresh interpreter, started in `cwd`, that cannot import this repository."""
    result = subprocess.run(
        [sys.executable, "-c", _BLOCK_PROJECT_IMPORTS + script, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"clean process failed:\n{result.stderr[-4000:]}")
    return result


@pytest.fixture
def forward_in_clean_process(tmp_path):
    """`f(model_dir, auto_class, inputs, output_name="logits") -> Tensor`: loads `model_dir` with
    `transformers.<auto_class>.from_pretrained(..., trust_remote_code=True)` in a clean process and
    returns `getattr(model(**inputs), output_name)`, computed there in eval mode."""

    def forward(model_dir, auto_class: str, inputs: dict[str, torch.Tensor], output_name: str = "logits"):
        workdir = tmp_path / "clean_process"
        workdir.mkdir(exist_ok=True)
        inputs_file, out_file = workdir / "inputs.safetensors", workdir / "output.safetensors"
        save_file({k: v.contiguous() for k, v in inputs.items()}, inputs_file)
        run_in_clean_process(
            _FORWARD_SCRIPT,
            str(model_dir),
            auto_class,
            str(inputs_file),
            output_name,
            str(out_file),
            cwd=workdir,
        )
        return load_file(out_file)["output"]

    return forward
