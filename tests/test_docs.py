"""The README and docs/: the README stays a short first page whose example prints what it shows, and every file,
folder and anchor the README and docs/ name exists (CHANGELOG.md names what was, so it is not checked)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a repository path in backticks or a markdown link: a top-level folder of this repository, then more path
PATH = re.compile(r"(?:`|\]\()((?:docs|benchmarks|experiments|examples|hub_configs|tests|modeling_anira|anira_study|anira_tasks|"
                  r"tokenization)/[^`)\s#]*|README\.md|CHANGELOG\.md)(?:#([\w-]+))?[`)]")


def code_blocks(text: str, language: str) -> list[str]:
    """The fenced blocks opened by ```language (an empty language: plain ``` blocks), in order."""
    blocks, current, opened_with = [], None, None
    for line in text.splitlines(keepends=True):
        if current is None and line.startswith("```"):
            current, opened_with = [], line[3:].strip()
        elif current is not None and line.startswith("```"):
            if opened_with == language:
                blocks.append("".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors (lowercase, punctuation dropped, spaces as hyphens) and explicit `<a id="...">`."""
    text = page.read_text()
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    slugs = {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
    return slugs | set(re.findall(r'<a id="([\w-]+)"></a>', text))


def test_the_readme_is_a_short_first_page():
    lines = README.splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the detail into docs/"
    assert any(line.startswith("./run experiment") for line in lines) and any(line.startswith("./run tests") for line in lines)
    first_screen = "\n".join(lines[:60])
    assert 'from_pretrained(name, trust_remote_code=True)' in first_screen and "out.depths" in first_screen


def test_the_readme_example_prints_each_token_with_the_depth_it_shows(monkeypatch, capsys):
    (example,) = [block for block in code_blocks(README, "python") if "out.depths" in block]
    shown = [block for block in code_blocks(README, "") if re.match(r"\S+:\d", block)]
    assert len(shown) == 1, "the README shows the example's output in the plain block after it"
    monkeypatch.chdir(ROOT)  # the example names hub_configs/ relative to the repository root
    exec(compile(example, "README.md", "exec"), {})
    assert capsys.readouterr().out == shown[0]


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_path_and_anchor_a_page_names_exists(page):
    missing = []
    for path, anchor in PATH.findall(page.read_text()):
        if re.search(r"[{}<>*]|\.\.\.", path):  # a pattern (`anira-{e,o}-depo`, `<name>`), not one path
            continue
        target = ROOT / path.rstrip("/,.:;")
        if not target.exists():
            missing.append(path)
        elif anchor and anchor not in anchors(target):
            missing.append(f"{path}#{anchor}")
    missing += [f"#{anchor}" for anchor in re.findall(r"\]\(#([\w-]+)\)", page.read_text()) if anchor not in anchors(page)]
    assert not missing, f"{page.relative_to(ROOT)} names what does not exist: {missing}"


def markdown_pages() -> list[Path]:
    """Every markdown page the repository tracks outside virtual environments and training outputs."""
    skip = {".venv", "outputs", ".git", "node_modules"}
    return sorted(p for p in ROOT.rglob("*.md") if not skip & set(p.relative_to(ROOT).parts))


def test_every_markdown_tables_delimiter_row_has_its_headers_cells():
    """A table whose delimiter row (`|---|---|`) has more or fewer cells than its header does not render as a table
    on GitHub (or on the Hub's card pages): every table of every page keeps them equal."""
    cells = lambda line: len(line.strip().strip("|").split("|"))
    wrong = []
    for page in markdown_pages():
        lines, fenced = page.read_text().splitlines(), False
        for i, line in enumerate(lines):
            fenced ^= line.startswith("```")
            if not fenced and i and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()) and lines[i - 1].startswith("|"):
                if cells(line) != cells(lines[i - 1]):
                    wrong.append(f"{page.relative_to(ROOT)}:{i + 1}: {cells(lines[i - 1])} header cells, {cells(line)} below")
    assert not wrong, "\n".join(wrong)
