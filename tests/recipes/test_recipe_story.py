"""Every recipe's `main` tells the same labelled story, so a reader finds any behaviour of any recipe from its
`main` in one hop: the labelled steps in one order, each a call into the kit (`recipes/kit/`) or a small
recipe-local function, one return at the end, and a body short enough to read at once. Behaviour comes from
public `Trainer` hooks (subclasses, callbacks), never from a function assigned onto an object's attribute."""

import ast
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
STORY = ["Run", "Data", "Tokenizer", "Model", "Trainer", "Train", "Evaluate", "Predict", "Save, card, push"]
TRAIN_SCRIPTS = sorted(RECIPES.glob("*/train.py"))


def _main_function(source: str) -> ast.FunctionDef:
    return next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "main")


@pytest.mark.parametrize("script", TRAIN_SCRIPTS, ids=lambda path: path.parent.name)
def test_main_has_the_labelled_blocks_in_order(script):
    source = script.read_text(encoding="utf-8")
    main = _main_function(source)
    body = source.splitlines()[main.lineno : main.end_lineno]  # from after `def main(`: the first label too
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


#: The most lines a `main` body may take (signature and docstring excluded).
MAIN_BODY_LINES = 60


@pytest.mark.parametrize("script", TRAIN_SCRIPTS, ids=lambda path: path.parent.name)
def test_main_is_the_story_and_nothing_else(script):
    main = _main_function(script.read_text(encoding="utf-8"))
    assert main.end_lineno - main.body[0].lineno + 1 <= MAIN_BODY_LINES


def functions_assigned_onto_attributes(source: str) -> list[str]:
    """`target = value` statements of `source` that put a function on an attribute (`trainer.compute_loss = ...`,
    `obj.x = y = ...`): a lambda, a function or method defined in `source`, `functools.partial` or
    `types.MethodType`; as `line: target`."""
    tree = ast.parse(source)
    defined = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value = node.value
        is_function = (
            isinstance(value, ast.Lambda)
            or (isinstance(value, ast.Name) and value.id in defined)
            or (isinstance(value, ast.Attribute) and value.attr in defined)
            or (isinstance(value, ast.Call) and ast.unparse(value.func).split(".")[-1] in ("partial", "MethodType"))
        )
        found += [f"{node.lineno}: {ast.unparse(t)}" for t in targets if is_function and isinstance(t, ast.Attribute)]
    return found


def test_the_attribute_check_catches_each_way_of_assigning_a_function():
    source = (
        "import functools, types\n"
        "def loss(model, inputs):\n    return 0\n"
        "trainer.compute_loss = loss\n"
        "self.trainer.log = lambda logs: None\n"
        "model.forward = functools.partial(loss, None)\n"
        "trainer.step = types.MethodType(loss, trainer)\n"
        "trainer.model = trainer.model_wrapped = trainer.model.merge_and_unload()\n"
    )
    assert functions_assigned_onto_attributes(source) == [
        "4: trainer.compute_loss",
        "5: self.trainer.log",
        "6: model.forward",
        "7: trainer.step",
    ]


def test_no_function_is_assigned_onto_an_attribute_in_the_recipes():
    offenders = {
        str(path.relative_to(RECIPES)): found
        for path in RECIPES.rglob("*.py")
        if (found := functions_assigned_onto_attributes(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
