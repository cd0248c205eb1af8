"""The layout's dependency direction: examples -> anira_study -> (anira_tasks, modeling_anira); anira_tasks -> tokenization."""

import ast
import re
import subprocess
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


# A folder of one machine: an absolute path into a workspace, a home, a run folder or a scratch folder. System paths
# that every machine has (/usr/bin/time, /proc/cpuinfo, /dev/null) are not such folders and are not matched.
MACHINE_PATH = re.compile(r"(?<![\w.$~/-])/(?:work|workspace|tmp|root|home|Users|mnt|scratch)/")
# Tracked files that may name one: none (the examples below are built from their parts, so no file spells one out).
MACHINE_PATH_ALLOWED: set[str] = set()
SKIPPED_DIRS = {".git", ".venv", "outputs", "__pycache__", "anira.egg-info"}


def tracked_files() -> list[str]:
    """`git ls-files`, or every file but the ignored build and output folders where the tree is not a checkout."""
    if (ROOT / ".git").exists():
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        return [name for name in listed.decode().split("\0") if name]
    return [str(path.relative_to(ROOT)) for path in ROOT.rglob("*")
            if path.is_file() and not SKIPPED_DIRS & set(path.relative_to(ROOT).parts)]


def _folder(name: str) -> str:
    """`/name/`, assembled here so that this file itself names no folder of one machine."""
    return "/" + name + "/"


def test_the_machine_path_pattern_tells_a_folder_of_one_machine_from_a_system_path():
    work, tmp, home, root = _folder("work"), _folder("tmp"), _folder("home"), _folder("root")
    for named in [f"cd {work}main", f'"output_dir": "{work}runs/x"', f"--output_dir {tmp}quick", f"{home}user/anira",
                  f"({root}.cache)", f"{_folder('Users')}me/anira", f"`{_folder('mnt')}data/run`"]:
        assert MACHINE_PATH.search(named), named
    for fine in ["/usr/bin/time -f", "/proc/cpuinfo", "outputs/tmp/run", "$RUNS/s16/e_argmax", f"https://example.org{home}x",
                 "experiments/seeds/", f"~{work}x", f"a{work}b"]:
        assert not MACHINE_PATH.search(fine), fine


def test_no_tracked_file_names_a_folder_of_one_machine():
    files = tracked_files()
    assert "README.md" in files and "tests/test_layout.py" in files
    found = []
    for name in files:
        path = ROOT / name
        if name in MACHINE_PATH_ALLOWED or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary: weights, figures
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not found, ("these tracked files name a folder of one machine; write a path relative to the repository "
                       "(outputs/...) or a placeholder the text defines ($RUNS/...):\n" + "\n".join(found))


SCRIPT_FOLDERS = ["experiments", "benchmarks"]


def script_imports(path: Path) -> set[str]:
    """The top-level module of every absolute import in a script (the ones inside functions included)."""
    return {module.split(".")[0] for module in imported_modules(path)}


def test_every_experiment_and_benchmark_script_parses_and_its_imports_resolve():
    """Scripts moved between folders (benchmarks/experiment/ became experiments/) must still parse and import what
    they name: a package module, a library in this environment, or a sibling file of the script (`python DIR/x.py`
    puts DIR first on sys.path)."""
    import importlib.util
    import sys

    scripts = sorted(path for folder in SCRIPT_FOLDERS for path in (ROOT / folder).rglob("*.py")
                     if "__pycache__" not in path.parts)
    assert len(scripts) >= 20, [str(path) for path in scripts]
    unresolved = []
    for path in scripts:
        compile(path.read_text(), str(path), "exec")  # a SyntaxError names the file and line
        for top in sorted(script_imports(path)):
            sibling = (path.parent / f"{top}.py").exists() or (path.parent / top / "__init__.py").exists()
            if not sibling and top not in sys.builtin_module_names and importlib.util.find_spec(top) is None:
                unresolved.append(f"{path.relative_to(ROOT)} imports {top}")
    assert not unresolved, unresolved


BREVO_ACCURACY = ROOT / "experiments" / "brevo_accuracy"


@pytest.mark.parametrize("folder, least", [("brevo_accuracy", 50), ("penalty_runs", 20)])
def test_experiment_logs_are_named_by_the_run_not_by_the_decision(folder, least):
    """A log says what ran (`validation_<run>.txt`, `<run>_probe.jsonl`, `<run>/`); whether the stage was kept is
    written in the folder's dated README, not in a file name (`keep_rule.py` itself is the rule's script)."""
    files = subprocess.run(["git", "ls-files", f"experiments/{folder}"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    assert len(files) >= least, files
    named_by_decision = [name for name in files if re.search(r"kept|keep_rule_|keep_rule\.txt", Path(name).relative_to(
        f"experiments/{folder}").as_posix())]
    assert not named_by_decision, named_by_decision


def test_every_log_the_brevo_accuracy_readme_names_exists():
    """The README names its logs by file name (`validation_e_stage6.txt`) or folder (`o_stage7/`): each is in the folder
    (or, written from the repository root, there)."""
    text = (BREVO_ACCURACY / "README.md").read_text()
    named = set(re.findall(r"`([\w.\-/]+\.(?:txt|jsonl)|[\w.\-]+/)`", text))
    assert {"validation_e_stage6.txt", "e_stage14_hard_mix_probe.jsonl", "o_stage7/"} <= named, sorted(named)
    missing = [name for name in sorted(named) if not (BREVO_ACCURACY / name).exists() and not (ROOT / name).exists()]
    assert not missing, f"experiments/brevo_accuracy/README.md names what does not exist: {missing}"
