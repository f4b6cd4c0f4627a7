"""Every recipe's `main` tells the same labelled story, so a reader finds any behaviour of any recipe from its
`main` in one hop: the labelled steps in one order, each a call into the kit (`recipes/kit/`) or a small
recipe-local function, one return at the end, and a body short enough to read at once. Behaviour comes from
public `Trainer` hooks (subclasses, callbacks), never from a function assigned onto an object's attribute."""

import ast
import functools
import importlib
import inspect
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
    """The statements of `source` that put a function on an attribute, by `=` (`trainer.compute_loss = ...`,
    `obj.x = y = ...`) or `setattr`: a lambda, a function or method defined in `source`, a function it imports
    (`from m import f`, `import m` then `m.f`), `functools.partial` or `types.MethodType`; as `line: target`."""
    tree = ast.parse(source)
    defined = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    imported = imported_names(tree)

    def is_function(value: ast.expr) -> bool:
        if isinstance(value, ast.Lambda):
            return True
        if isinstance(value, ast.Call):
            return ast.unparse(value.func).split(".")[-1] in ("partial", "MethodType")
        if isinstance(value, (ast.Name, ast.Attribute)) and ast.unparse(value).split(".")[-1] in defined:
            return True
        names = ast.unparse(value).split(".") if isinstance(value, (ast.Name, ast.Attribute)) else []
        if not names or names[0] not in imported:
            return False
        found = imported[names[0]]
        for name in names[1:]:
            found = getattr(found, name, None)
        return inspect.isroutine(found) or isinstance(found, functools.partial)

    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if is_function(node.value):
                found += [(node.lineno, ast.unparse(t)) for t in targets if isinstance(t, ast.Attribute)]
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "setattr" and len(node.args) == 3:
            if is_function(node.args[2]):
                found.append((node.lineno, ast.unparse(node)))
    return [f"{line}: {target}" for line, target in sorted(found)]


def imported_names(tree: ast.Module) -> dict[str, object]:
    """What the absolute imports of `tree` bind, by the name they bind: a module, or the object imported from one.
    An optional package that is not installed binds nothing."""
    bound = {}
    for node in ast.walk(tree):
        try:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.asname or alias.name.split(".")[0]
                    bound[name] = importlib.import_module(alias.name if alias.asname else name)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                module = importlib.import_module(node.module)
                bound |= {alias.asname or alias.name: getattr(module, alias.name, None) for alias in node.names}
        except ImportError:
            continue
    return bound


def test_the_attribute_check_catches_each_way_of_assigning_a_function():
    source = (
        "import functools, types\n"
        "import os.path\n"
        "from os.path import join, sep\n"
        "def loss(model, inputs):\n    return 0\n"
        "trainer.compute_loss = loss\n"
        "self.trainer.log = lambda logs: None\n"
        "model.forward = functools.partial(loss, None)\n"
        "trainer.step = types.MethodType(loss, trainer)\n"
        "trainer.model = trainer.model_wrapped = trainer.model.merge_and_unload()\n"
        "trainer.save_model = join\n"
        "trainer.evaluate = os.path.basename\n"
        "setattr(trainer, 'training_step', loss)\n"
        "trainer.separator = sep\n"
        "setattr(trainer, 'label_names', ['labels'])\n"
        "from not_installed_package import anything\n"
    )
    assert functions_assigned_onto_attributes(source) == [
        "6: trainer.compute_loss",
        "7: self.trainer.log",
        "8: model.forward",
        "9: trainer.step",
        "11: trainer.save_model",
        "12: trainer.evaluate",
        "13: setattr(trainer, 'training_step', loss)",
    ]


def test_no_function_is_assigned_onto_an_attribute_in_the_recipes():
    offenders = {
        str(path.relative_to(RECIPES)): found
        for path in RECIPES.rglob("*.py")
        if (found := functions_assigned_onto_attributes(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
