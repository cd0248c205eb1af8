"""The tables of the trained named models say what their `report.json` says, wherever they are quoted.

Two places quote each trained folder's test results: the README's table of trained models (accuracy and mean answer
depth per seen size, rho over the seen sizes) and the full tables of docs/results.md (accuracy with its interval and
mean answer depth per size, seen and unseen, and rho). Those folders are retrained and replaced stage by stage; these
tests fail when a row in either place was left at an earlier model's numbers, or a trained folder is missing there.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results.md"
NUMBER = r"-?\d+\.\d\d"
CELL = re.compile(rf"^(?P<accuracy>{NUMBER})(?: \[(?P<low>{NUMBER}), (?P<high>{NUMBER})\])?, (?:depth )?(?P<depth>\d+(?:\.\d)?)$")
RHO = re.compile(rf"^(?P<rho>{NUMBER}) \[(?P<low>{NUMBER}), (?P<high>{NUMBER})\]$")
TRAINED = sorted(path.parent.name for path in (ROOT / "hub_configs").glob("*/report.json"))


def table_rows(path: Path) -> list[tuple[list[str], list[str]]]:
    """(header cells, row cells) of every markdown table row in `path` whose first cell names a trained folder."""
    rows, header = [], None
    for line in path.read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif re.fullmatch(r"`anira-[a-z]+-[a-z]+`", cells[0]) and cells[0].strip("`") in TRAINED:
            rows.append((header, cells))
    return rows


def load_report(name: str) -> dict:
    return json.loads((ROOT / "hub_configs" / name / "report.json").read_text())["report"]


def per_size(report: dict, splits: tuple[str, ...]) -> list[tuple[int, dict]]:
    return [(int(c), entry) for split in splits
            for c, entry in sorted(report[split]["per_complexity"].items(), key=lambda item: int(item[0]))]


def expected_depth(depth: float, quoted: str) -> str:
    """A fixed-depth model's depth is quoted as an integer ("6"), an adaptive one's to one decimal ("2.4")."""
    return f"{depth:.0f}" if "." not in quoted else f"{depth:.1f}"


def check_rho(name: str, report: dict, cell: str) -> None:
    rho, interval = report["test_seen"]["spearman"], report["test_seen"]["spearman_interval"]
    if rho != rho:  # NaN: a fixed-depth model's depth does not vary
        assert cell == "-", f"{name}: rho is undefined for a depth that does not vary, quoted {cell!r}"
        return
    parsed = RHO.match(cell)
    assert parsed, f"{name}: unreadable rho cell {cell!r}"
    assert (parsed["rho"], parsed["low"], parsed["high"]) == tuple(f"{x:.2f}" for x in (rho, *interval)), \
        f"{name}: quoted rho {cell!r}, report {rho:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"


RESULTS_ROWS = table_rows(RESULTS)
README_ROWS = table_rows(README)


@pytest.mark.parametrize("path,rows", [(README, README_ROWS), (RESULTS, RESULTS_ROWS)], ids=["README", "results"])
def test_every_trained_folder_is_quoted_once(path, rows):
    quoted = [cells[0].strip("`") for _, cells in rows]
    assert TRAINED and sorted(quoted) == TRAINED, f"{path.relative_to(ROOT)} quotes {sorted(quoted)}, trained: {TRAINED}"


@pytest.mark.parametrize("header,cells", RESULTS_ROWS, ids=[cells[0].strip("`") for _, cells in RESULTS_ROWS])
def test_a_results_table_row_matches_its_report(header, cells):
    """docs/results.md: accuracy [interval], depth per seen and unseen size, then rho over the seen sizes."""
    name = cells[0].strip("`")
    report = load_report(name)
    sizes = per_size(report, ("test_seen", "test_extrapolation"))
    size_cells, rho_cell = cells[-len(sizes) - 1:-1], cells[-1]
    # the header names the sizes in the same order ("k = 1", "2", ..., "4 (unseen)")
    assert [int(re.search(r"\d+", h).group()) for h in header[-len(sizes) - 1:-1]] == [c for c, _ in sizes], name
    for cell, (c, entry) in zip(size_cells, sizes):
        parsed = CELL.match(cell)
        assert parsed, f"{name} at {c}: unreadable cell {cell!r}"
        accuracy, interval = entry["generated_accuracy"], entry["intervals"]["generated_accuracy"]
        assert parsed["accuracy"] == f"{accuracy:.2f}", f"{name} at {c}: quoted {cell!r}, report {accuracy:.4f}"
        if parsed["low"] is not None:
            assert (parsed["low"], parsed["high"]) == (f"{interval[0]:.2f}", f"{interval[1]:.2f}"), f"{name} at {c}"
        assert parsed["depth"] == expected_depth(entry["mean_depth"], parsed["depth"]), \
            f"{name} at {c}: quoted depth {parsed['depth']}, report {entry['mean_depth']:.3f}"
    check_rho(name, report, rho_cell)


@pytest.mark.parametrize("header,cells", README_ROWS, ids=[cells[0].strip("`") for _, cells in README_ROWS])
def test_a_readme_table_row_matches_its_report(header, cells):
    """README: `task, k = 1 / 2 / 3`, accuracies and depths per seen size joined by " / ", rho, a link to the card."""
    name = cells[0].strip("`")
    report = load_report(name)
    columns = dict(zip(header, cells))
    sizes = per_size(report, ("test_seen",))
    # "DEPO v8, k = 1 / 2 / 3 / 4": the sizes follow the knob's "="
    assert [int(s) for s in re.findall(r"\d+", columns["task, seen sizes"].split("=")[-1])] == [c for c, _ in sizes], name
    accuracies = columns["accuracy"].split(" / ")
    depths = columns["mean depth"].split(" / ")
    assert len(accuracies) == len(depths) == len(sizes), f"{name}: one accuracy and one depth per seen size"
    for accuracy, depth, (c, entry) in zip(accuracies, depths, sizes):
        assert accuracy == f"{entry['generated_accuracy']:.2f}", \
            f"{name} at {c}: README accuracy {accuracy}, report {entry['generated_accuracy']:.4f}"
        assert re.fullmatch(r"\d+(?:\.\d)?", depth) and depth == expected_depth(entry["mean_depth"], depth), \
            f"{name} at {c}: README depth {depth}, report {entry['mean_depth']:.3f}"
    check_rho(name, report, columns["rho(depth, size), seen"])
    assert columns["card"] == f"[card](hub_configs/{name}/README.md)", name


def test_the_depth_need_table_matches_each_reports_depth_need():
    """docs/results.md "Needed versus allocated depth": each row's uniform accuracies, own accuracy and depth, and
    matched oracle gain are its folder's report.json `depth_need` on the seen sizes."""
    text = (ROOT / "docs" / "results.md").read_text()
    section = text.split("## Needed versus allocated depth")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if re.match(r"^\| anira-[a-z]+-[a-z]+ \|", line)]
    assert sorted(r.split("|")[1].strip() for r in rows) == sorted(TRAINED)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        need = json.loads((ROOT / "hub_configs" / cells[0] / "report.json").read_text())["depth_need"]["per_split"]["test_seen"]
        assert int(cells[1]) == need["prompts"], cells[0]
        assert cells[2] == " / ".join(f"{u['accuracy']:.2f}" for u in need["uniform"]), cells[0]
        if "adaptive" in need:
            assert cells[3] == f"{need['adaptive']['accuracy']:.2f} at {need['adaptive']['mean_depth']:.2f}", cells[0]
        gain = need["oracle"]["gain_matched"]
        assert cells[6].startswith(f"{gain['value']:.2f} [{gain['interval'][0]:.2f}, {gain['interval'][1]:.2f}]"), cells[0]


@pytest.mark.parametrize("task,page", [("depo", README), ("depo-v8", README), ("brevo", README), ("brevo", RESULTS)],
                         ids=["README-depo", "README-depo-v8", "README-brevo", "results-brevo"])
def test_the_run_count_a_grids_findings_rest_on_is_the_grids(task, page):
    """Where a page states a grid's findings, the number of runs it says they rest on ("15 runs", "9 of 15 runs") is
    the number in the grid's summary.json (and, for a grid in progress, the grid's size): a landed run makes a stale
    count fail here."""
    from anira_study import study

    summary = json.loads((ROOT / "experiments" / "study" / task / "summary.json").read_text())
    size = study.grid_size(task)
    heading = {"depo": "DEPO, protocol v1", "depo-v8": "**DEPO v8**", "brevo": "BREVO, protocol v1"}
    text = page.read_text()
    if page == RESULTS:
        text = text.split("\n## BREVO\n")[1].split("\n### ")[0]
        counted = re.search(r"\((\d+)(?: of (\d+))? runs[ ,]", text)
    else:
        counted = re.search(re.escape(heading[task]) + r" \((\d+)(?: of (\d+))? runs", text)
    assert counted, f"{page.relative_to(ROOT)} states no run count for {task}"
    done, of = int(counted[1]), int(counted[2] or counted[1])
    assert (done, of) == (summary["runs"], size), \
        f"{page.relative_to(ROOT)} says {done} of {of} {task} runs; summary.json has {summary['runs']} of {size}"


def test_the_study_pages_grid_table_says_which_grids_are_complete():
    """experiments/study/README.md's table of grids: a grid said to be complete has every run in its summary.json, and
    one said to be training has some but not all; a landed last run makes a stale "training" fail here."""
    from anira_study import study

    page = ROOT / "experiments" / "study" / "README.md"
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in page.read_text().splitlines()
            if line.startswith("| `")]
    checked = 0
    for cells in rows:
        grids, status = re.findall(r"`([a-z0-9_-]+)`", cells[0]), cells[3]
        summary = ROOT / "experiments" / "study" / grids[0] / "summary.json"
        if not summary.exists():
            assert status.startswith("queued"), f"{grids[0]}: no runs yet, but the page says {status!r}"
            continue
        done, size = json.loads(summary.read_text())["runs"], study.grid_size(grids[0])
        if status.startswith("complete"):
            assert done == size and f"({size} runs)" in status, f"{grids[0]}: {done} of {size} runs, page says {status!r}"
        else:
            assert status.startswith("training") and 0 < done < size, f"{grids[0]}: {done} of {size}, page says {status!r}"
        checked += 1
    assert checked >= 3  # depo, brevo, depo-v8


FINDINGS_COLUMNS = {"DEPO, protocol v1": "depo", "BREVO, protocol v1": "brevo", "DEPO v8": "depo-v8"}
COUNT = re.compile(r"(\d+) of (\d+)")
PAPER = "paper's objective: "  # a cell's second part: the twins trained on the paper's objective (protocol v6 on)
# the rows counted per controller, and the summary.json field each counts
PER_CONTROLLER = {"1.": "finding_1_seeds", "2.": "finding_2_seeds", "4.": "finding_4_seeds", "depth pays": "depth_pays_seeds"}


def per_controller_field(finding: str) -> str | None:
    """The summary.json field a per-controller row counts, or None for a grid-wide row."""
    return next((field for prefix, field in PER_CONTROLLER.items() if finding.startswith(prefix)), None)


def findings_table(page: Path, first_header: str) -> list[list[str]]:
    """The rows (header first) of the markdown table on `page` whose first header cell starts with `first_header`."""
    lines = page.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header}"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not set(line) <= set("|-: "):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def expected_counts(summary: dict, finding: str, suffix: str = "") -> dict[str, tuple[int, int]]:
    """{who: (count, of)} the grid's summary.json gives a finding's row: per controller (`anira-e<suffix>`,
    `anira-o<suffix>`) for findings 1, 2 and 4 and "depth pays", the grid's seeds (or seed pairs) for findings 3 and 5
    and the declared comparison of the iteration loss; {} where the grid does not test it."""
    models, findings = summary["models"], summary["findings"]
    if field := per_controller_field(finding):
        return {f"ANIRA-{m[6].upper()}": (models[m][field], len(models[m]["seeds"]))
                for m in (f"anira-e{suffix}", f"anira-o{suffix}")}
    if finding.startswith("3."):
        return {"grid": (findings["finding_3_seeds"], findings["finding_5_pairs"])} if "finding_3_seeds" in findings else {}
    if finding.startswith("5."):
        return {"grid": (findings["finding_5_seeds"], findings["finding_5_pairs"])}
    if "iteration loss" in finding:
        phases = findings.get("iteration_loss_phases")
        return {"grid": (phases["holds_seeds"], phases["seeds"])} if phases else {}
    raise AssertionError(f"unknown finding row {finding!r}")


def check_counts(cell: str, expected: dict[str, tuple[int, int]], where) -> None:
    """`cell`'s "N of M" against `expected`: "ANIRA-E N of M, ANIRA-O N of M" each its own; "N of M ... for either"
    both; a lone "N of M" the grid's; no count where nothing is expected."""
    if not expected:
        assert not COUNT.search(cell), where
        return
    named = {who: (int(n), int(of)) for who, n, of in re.findall(r"(ANIRA-[EO]) (\d+) of (\d+)", cell)}
    quoted = {(int(n), int(of)) for n, of in COUNT.findall(cell)}
    if named:
        assert named == expected, (where, expected)
    else:
        assert quoted == set(expected.values()) and ("for either" in cell) == (len(expected) == 2), (where, expected)


@pytest.mark.parametrize("column,task", FINDINGS_COLUMNS.items(), ids=FINDINGS_COLUMNS.values())
def test_the_readmes_findings_table_counts_what_each_grids_summary_counts(column, task):
    """README's table of findings: every "N of M" in a grid's column is its summary.json's count (per controller, for
    both "for either"; after "paper's objective:", the paper-objective twins'), and
    "depth is needed" says holds exactly when the summary's rule holds. A stale cell after a landed run fails here."""
    header, *rows = findings_table(README, "finding (the protocol's rule)")
    index = next(i for i, h in enumerate(header) if h.startswith(column))
    summary = json.loads((ROOT / "experiments" / "study" / task / "summary.json").read_text())
    runs = summary["runs"] if summary["runs"] == summary.get("planned", summary["runs"]) else \
        f"{summary['runs']} of {summary['planned']}"
    assert header[index] == f"{column} ({runs} runs)", (header[index], runs)
    for cells in rows:
        finding, cell = cells[0], cells[index]
        if finding.startswith("depth is needed"):
            assert cell.startswith("holds") == summary["findings"]["depth_needed"]["holds"], (task, cell)
            continue
        own, _, paper = cell.partition(PAPER)
        check_counts(own, expected_counts(summary, finding), (task, finding, cell))
        if paper:
            check_counts(paper, expected_counts(summary, finding, "-paper"), (task, finding, cell))
        elif "anira-e-paper" in summary["models"] and per_controller_field(finding):
            raise AssertionError(f"{task}, {finding}: the paper-objective twins' counts are missing ({cell!r})")
