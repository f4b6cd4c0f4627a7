"""Every recipe's `main` tells the same labelled story (STYLE.md "Recipes read as a story"), so a reader
finds any behaviour of any recipe from its `main` in one hop."""

import ast
import re
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
STORY = ["Data", "Tokenizer", "Model", "Trainer", "Train", "Evaluate", "Predict", "Save, card, push"]
TRAIN_SCRIPTS = sorted(RECIPES.glob("*/train.py"))


def _main_function(source: str) -> ast.FunctionDef:
    return next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "main")


@pytest.mark.parametrize("script", TRAIN_SCRIPTS, ids=lambda path: path.parent.name)
def test_main_has_the_labelled_blocks_in_order(script):
    source = script.read_text(encoding="utf-8")
    main = _main_function(source)
    body = source.splitlines()[main.body[0].lineno - 1 : main.end_lineno]
    indent = " " * main.body[0].col_offset
    labels = [line[len(indent) + 2 :] for line in body if line.startswith(f"{indent}# ")]
    assert [label for label in labels if label in STORY] == STORY


@pytest.mark.parametrize("script", TRAIN_SCRIPTS, ids=lambda path: path.parent.name)
def test_main_returns_only_at_its_end(script):
    main = _main_function(script.read_text(encoding="utf-8"))
    assert [node.lineno for node in _own_returns(main)] == [main.body[-1].lineno]


def _own_returns(function: ast.FunctionDef) -> list[ast.Return]:
    """The `return` statements of `function` itself, not of the functions defined inside it."""
    found, pending = [], list(function.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Return):
            found.append(node)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            pending.extend(ast.iter_child_nodes(node))
    return found


def test_no_function_is_assigned_onto_a_trainer():
    pattern = re.compile(r"trainer\.\w+\s*=\s*lambda")
    offenders = [str(path) for path in RECIPES.rglob("*.py") if pattern.search(path.read_text(encoding="utf-8"))]
    assert offenders == []
