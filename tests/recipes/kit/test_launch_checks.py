"""`recipes.kit.launch_checks`: a DeepSpeed launch on a machine without a CUDA GPU is refused in one line before any
work, a GPU config on a machine without one says in a line that the run uses the CPU, and a launch never hangs."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recipes.kit.command_line import parse_config
from recipes.kit.errors import ConfigError
from recipes.kit.launch_checks import check_launch_fits_machine, gpu_config_on_cpu

REPO = Path(__file__).resolve().parents[3]
NO_GPU = not torch.cuda.is_available()


@pytest.mark.skipif(not NO_GPU, reason="a CUDA GPU is present: DeepSpeed may run")
def test_deepspeed_without_a_gpu_is_refused_when_parsing(monkeypatch, tmp_path):
    check_launch_fits_machine()  # no DeepSpeed asked: nothing to refuse
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    recipe = __import__("recipes.nce_lm.train", fromlist=["CONFIG_CLASSES"])
    argv = [str(REPO / "recipes/nce_lm/configs/tiny.yaml"), "--output_dir", str(tmp_path / "out")]
    with pytest.raises(ConfigError, match="asks for DeepSpeed, which needs CUDA GPUs.*cpu_multi.yaml"):
        parse_config(*recipe.CONFIG_CLASSES, argv=argv)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.accelerator.is_available(), reason="an accelerator is present: the config fits")
@pytest.mark.parametrize(
    ("environment", "asked"),
    [
        ({"ACCELERATE_MIXED_PRECISION": "bf16"}, "mixed_precision bf16"),  # ddp.yaml, fsdp.yaml
        ({"ACCELERATE_MIXED_PRECISION": "fp16", "ACCELERATE_USE_CPU": "False"}, "mixed_precision fp16"),
        ({"ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_USE_CPU": "False"}, "use_cpu false"),
        ({"ACCELERATE_MIXED_PRECISION": "no"}, None),  # cpu_multi.yaml, fsdp_cpu.yaml
        ({"ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_USE_CPU": "True"}, None),
        ({}, None),  # not launched by accelerate
    ],
)
def test_a_gpu_config_on_a_machine_without_one_says_the_run_uses_the_cpu(monkeypatch, environment, asked):
    for name in ("ACCELERATE_MIXED_PRECISION", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    note = gpu_config_on_cpu()
    assert (note is None) == (asked is None)
    if asked is not None:
        assert f"asks for a GPU ({asked})" in note and "uses the CPU" in note


@pytest.mark.slow
@pytest.mark.skipif(not NO_GPU, reason="a CUDA GPU is present: DeepSpeed may run")
def test_a_deepspeed_launch_on_this_machine_ends_at_once(tmp_path):
    """Launched as a user launches it, with a timeout that fails the test on a hang: it ends in seconds with a
    non-zero status and a message naming DeepSpeed (ours when DeepSpeed is installed, accelerate's launcher's when
    it is not), and trains nothing."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    command += [str(REPO / "recipes/accelerate_configs/zero2.yaml"), "--num_processes", "1"]
    command += [str(REPO / "recipes/nce_lm/train.py"), str(REPO / "recipes/nce_lm/configs/tiny.yaml")]
    command += ["--output_dir", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode != 0
    assert "DeepSpeed" in done.stderr
    assert not (tmp_path / "out").exists()
