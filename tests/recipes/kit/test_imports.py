"""The imports of the repository's packages run one way: a recipe (`recipes/<task>/`, `recipes/*.py` scripts) ->
the kit (`recipes/kit/`) -> `custom_models` and `data`; no module imports one that stands above it, and no
chain of imports comes back to where it started. Read from the source (every `import` statement, those inside
functions too), so a cycle hidden behind a late import counts."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("custom_models", "data", "recipes")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def repository_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `path` imports: `from a.b import c` counts `a.b.c` when that is a module, else
    `a.b`; a package's `__init__` that the import runs on the way is not counted (it imports nothing here)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in known}
            found.add(node.module)
    return found & known


def import_graph() -> dict[str, set[str]]:
    modules = repository_modules()
    return {name: imported_modules(path, set(modules)) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` (its modules in import order, the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target, [*path, target])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def layer(module: str) -> int:
    """0: `custom_models` and `data`; 1: the kit; 2: a recipe or a script under `recipes/`."""
    if module.startswith(("custom_models", "data")):
        return 0
    return 1 if module == "recipes.kit" or module.startswith("recipes.kit.") else 2


def test_the_cycle_finder_finds_a_planted_cycle_and_passes_a_chain():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_the_imports_it_must_see():
    graph = import_graph()
    assert "recipes.kit.errors" in graph["recipes.kit.arguments"]
    assert "recipes.kit.model_loading" in graph["recipes.sentiment.train"]
    assert len(graph) > 60


def test_no_module_imports_itself_back_through_others():
    assert find_cycle(import_graph()) is None


def test_no_module_imports_one_that_stands_above_it():
    upward = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if layer(target) > layer(module)
    ]
    assert not upward


def test_a_recipe_imports_no_other_recipe():
    crossing = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if layer(module) == 2 and module.count(".") == 2
        for target in targets
        if layer(target) == 2 and target.split(".")[1] != module.split(".")[1]
    ]
    assert not crossing


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("recipes.kit.errors", {"data.errors"}),
        ("recipes.kit.arguments", {"recipes.kit.errors"}),
    ],
)
def test_the_bottom_of_the_kit_imports_only_what_it_names(module, allowed):
    """The errors and the argument dataclasses load nothing: a configuration is checked without a loader."""
    assert import_graph()[module] <= allowed


def test_parsing_imports_no_loading_code():
    """The command line parses and checks; reading data, tokenizers or models is the steps' work."""
    imported = import_graph()["recipes.kit.command_line"]
    assert not {name for name in imported if layer(name) == 0}
    loaders = {"recipes.kit.data_steps", "recipes.kit.run_steps", "recipes.kit.lifecycle", "recipes.kit.model_loading"}
    assert not imported & loaders
