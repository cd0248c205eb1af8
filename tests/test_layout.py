"""The layout's dependency direction: examples -> anira_study -> (anira_tasks, modeling_anira); anira_tasks -> tokenization."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> top-level modules it must never import (the tokenization build tool may read the tasks)
FORBIDDEN = {
    "modeling_anira": {"anira_tasks", "anira_study", "tokenization", "examples"},
    "anira_tasks": {"anira_study", "modeling_anira", "examples"},
    "anira_study": {"examples"},
    "tokenization/__init__.py": {"anira_tasks", "anira_study", "modeling_anira"},
}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    return modules


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_nothing_imports_upward(package):
    target = ROOT / package
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    assert files
    for path in files:
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert top not in FORBIDDEN[package], f"{path.relative_to(ROOT)} imports {module}"
    if package == "anira_tasks":  # the task side knows nothing of training
        for path in files:
            assert not {m for m in imported_modules(path) if m.endswith("Trainer") or m.startswith("transformers.trainer")}, path


def test_no_example_script_shadows_an_importable_module():
    """`python examples/X.py` puts examples/ first on sys.path, so a script named like a module the package imports
    (as `evaluate.py` once shadowed the `evaluate` library the metrics load) would be imported in its place."""
    import importlib.machinery
    import sys

    examples = ROOT / "examples"
    scripts = sorted(path.stem for path in examples.glob("*.py"))
    assert scripts
    path = [p for p in sys.path if Path(p or ".").resolve() != examples]
    shadowed = [name for name in scripts
                if name in sys.stdlib_module_names or importlib.machinery.PathFinder.find_spec(name, path) is not None]
    assert not shadowed, f"examples/ scripts named like importable modules: {shadowed}"
