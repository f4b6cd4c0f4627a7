"""The recipes an installed copy of the project ships."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_recipe_folder_is_a_package_that_an_install_ships():
    # pyproject.toml's package discovery (`include = ["recipes*", ...]`) finds only folders with an __init__.py: a
    # recipe without one runs from a checkout but is missing from a wheel or a non-editable install.
    recipe_folders = [train.parent for train in (REPO / "recipes").glob("*/train.py")]
    assert len(recipe_folders) == 4
    assert [folder.name for folder in recipe_folders if not (folder / "__init__.py").is_file()] == []
