"""Run transformers' common model tests (ModelTesterMixin, GenerationTesterMixin, ConfigTester) against anira.

    python tests/conformance/run_transformers_common_tests.py TRANSFORMERS_DIR [--modes fixed early online]
                                                              [--generation-mixin FILE] [--work DIR] [-- PYTEST_ARGS...]

TRANSFORMERS_DIR is a transformers source tree (a git checkout, or an unpacked sdist) of the installed version:
its `tests/` holds the mixins, which the wheel does not ship. They are copied into a work folder (a new temporary
one unless --work names one), next to `anira_tester.py` (copied as `test_modeling_anira.py`), and pytest runs that
file once per depth mode, outside this repository's test suite (nothing here is collected by it). A mixin file the
tree lacks (an sdist has no tests/generation/ nor tests/exporters/) is replaced by an empty mixin, and the run says
so: those tests are then not run. --generation-mixin gives GenerationTesterMixin's file (tests/generation/test_utils.py
of a transformers git checkout) to a tree without it. Where a copied mixin spells an argument the installed
transformers no longer accepts, the copy is rewritten to the installed spelling (ADAPTATIONS), and the run says so.
docs/conformance.md lists the outcome of each failing test and why.
"""

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# file -> the stand-in written when the tree lacks it (what the copied modules import from it)
STAND_INS = {
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "utils/test_configuration_utils.py": (
        "config_common_kwargs = {\n"
        '    "return_dict": False, "output_hidden_states": True, "output_attentions": True, "dtype": "float16",\n'
        '    "chunk_size_feed_forward": 5, "architectures": ["BertModel"], "id2label": {0: "label"},\n'
        '    "label2id": {"label": "0"}, "problem_type": "regression",\n'
        "}\n"
    ),
}
REQUIRED = ("test_modeling_common.py", "test_configuration_common.py")


def _dynamic_full_removed() -> bool:
    from transformers.generation.configuration_utils import ALL_CACHE_IMPLEMENTATIONS

    return "dynamic_full" not in ALL_CACHE_IMPLEMENTATIONS


# file -> (text, replacement, applies, why): a mixin older than the installed transformers names what it has renamed
ADAPTATIONS = {
    "generation/test_utils.py": [
        ('"cache_implementation": "dynamic_full"', '"cache_implementation": "dynamic"', _dynamic_full_removed,
         'cache_implementation "dynamic_full" (a dynamic cache without sliding-window layers) is not accepted by the '
         'installed transformers; "dynamic" is that cache for a model without sliding windows'),
    ],
}


def adapt(tests: Path) -> list[str]:
    """Rewrite the copied mixins per ADAPTATIONS; returns what was rewritten and why."""
    notes = []
    for relative, rules in ADAPTATIONS.items():
        path = tests / relative
        if not path.is_file():
            continue
        text = path.read_text()
        for old, new, applies, why in rules:
            if old in text and applies():
                text = text.replace(old, new)
                notes.append(f"tests/{relative}: {old} -> {new} ({why})")
        path.write_text(text)
    return notes


def prepare(transformers_dir: Path, work: Path, generation_mixin: Path | None = None) -> list[str]:
    """Copy the mixins into work/tests (a package); returns the files replaced by stand-ins."""
    source, tests = transformers_dir / "tests", work / "tests"
    missing = [name for name in REQUIRED if not (source / name).is_file()]
    if missing:
        raise SystemExit(f"{transformers_dir} has no tests/{missing[0]}: give the root of a transformers source tree.")
    tests.mkdir(parents=True, exist_ok=True)
    (tests / "__init__.py").write_text("")
    for name in REQUIRED:
        shutil.copy(source / name, tests / name)
    stand_ins = []
    for relative, stand_in in STAND_INS.items():
        folder = Path(relative).parent
        if relative == "generation/test_utils.py" and generation_mixin is not None:
            (tests / folder).mkdir(exist_ok=True)
            shutil.copy(generation_mixin, tests / relative)
        elif (source / relative).is_file():
            shutil.copytree(source / folder, tests / folder, dirs_exist_ok=True)
        else:
            (tests / folder).mkdir(exist_ok=True)
            (tests / relative).write_text(stand_in)
            stand_ins.append(relative)
        (tests / folder / "__init__.py").touch()
    shutil.copy(HERE / "anira_tester.py", tests / "test_modeling_anira.py")
    return stand_ins


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pytest_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("transformers_dir", type=Path)
    parser.add_argument("--modes", nargs="+", default=["fixed", "early", "online"], choices=["fixed", "early", "online"])
    parser.add_argument("--generation-mixin", type=Path, default=None,
                        help="tests/generation/test_utils.py of a transformers git checkout (an sdist lacks it)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the copied tests (default: a new temporary one)")
    args = parser.parse_args(own)
    if importlib.util.find_spec("parameterized") is None:
        raise SystemExit("transformers' test files import `parameterized`: pip install parameterized")
    work = args.work or Path(tempfile.mkdtemp(prefix="anira-conformance-"))
    if args.generation_mixin is not None and not args.generation_mixin.is_file():
        raise SystemExit(f"--generation-mixin {args.generation_mixin}: no such file")
    for relative in prepare(args.transformers_dir.resolve(), work, args.generation_mixin):
        print(f"tests/{relative} is not in {args.transformers_dir}: an empty stand-in replaces it (its tests do not run)")
    for note in adapt(work / "tests"):
        print(f"adapted {note}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    status = 0
    for mode in args.modes:
        print(f"== depth_mode={mode} (tests in {work / 'tests'})", flush=True)
        command = [sys.executable, "-m", "pytest", "tests/test_modeling_anira.py", "-q", "-rfEs", "-p", "no:cacheprovider",
                   "--rootdir", str(work), "-o", "addopts=", *pytest_args]
        status = max(status, subprocess.call(command, cwd=work, env={**env, "ANIRA_DEPTH_MODE": mode}))
    return status


if __name__ == "__main__":
    sys.exit(main())
