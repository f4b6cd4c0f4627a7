"""`python -m recipes.merge_adapter ADAPTER_FOLDER OUTPUT_DIR`: what it refuses (that it writes the folder a run
merges on save: tests/recipes/kit/test_adapters.py, which trains the adapters)."""

import pytest

from recipes.merge_adapter import main as merge_adapter_main


@pytest.mark.parametrize("folder", ["empty", "model"])
def test_merge_adapter_refuses_a_folder_without_adapters_in_one_line(folder, tmp_path, capsys):
    source = tmp_path / folder
    source.mkdir()
    if folder == "model":  # a plain model's folder, or a checkpoint of a LoRA run: it holds config.json
        (source / "config.json").write_text("{}")
        (source / "adapter_config.json").write_text("{}")
    with pytest.raises(SystemExit) as exited:
        merge_adapter_main([str(source), str(tmp_path / "out")])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {source} is not a folder of LoRA adapters") and error.count("\n") == 1
    assert not (tmp_path / "out").exists()
