"""The README's tables of the trained named models say what their `report.json` says.

The README quotes each trained folder's test table (accuracy with its interval, mean answer depth per complexity,
rho over the seen sizes). Those folders are retrained and replaced stage by stage; this test fails when a table row
was left at an earlier model's numbers.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
NUMBER = r"-?\d+\.\d\d"
CELL = re.compile(rf"^(?P<accuracy>{NUMBER})(?: \[(?P<low>{NUMBER}), (?P<high>{NUMBER})\])?, (?:depth )?(?P<depth>\d+(?:\.\d)?)$")
RHO = re.compile(rf"^(?P<rho>{NUMBER}) \[(?P<low>{NUMBER}), (?P<high>{NUMBER})\]$")


def readme_rows() -> list[tuple[list[str], list[str]]]:
    """(header cells, row cells) of every README table row that names a trained folder."""
    rows, header = [], None
    for line in README.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif re.fullmatch(r"`anira-[a-z]+-[a-z]+`", cells[0]) and (ROOT / "hub_configs" / cells[0].strip("`") / "report.json").exists():
            rows.append((header, cells))
    return rows


ROWS = readme_rows()


def test_the_readme_quotes_every_trained_folder():
    quoted = {cells[0].strip("`") for _, cells in ROWS}
    trained = {path.parent.name for path in (ROOT / "hub_configs").glob("*/report.json")}
    assert trained and quoted == trained


@pytest.mark.parametrize("header,cells", ROWS, ids=[cells[0].strip("`") for _, cells in ROWS])
def test_a_readme_table_row_matches_its_report(header, cells):
    report = json.loads((ROOT / "hub_configs" / cells[0].strip("`") / "report.json").read_text())["report"]
    per_size = [(int(c), entry) for split in ("test_seen", "test_extrapolation")
                for c, entry in sorted(report[split]["per_complexity"].items(), key=lambda item: int(item[0]))]
    size_cells, rho_cell = cells[-len(per_size) - 1:-1], cells[-1]
    # the header names the sizes in the same order ("k = 1", "2", ..., "4 (unseen)")
    assert [int(re.search(r"\d+", h).group()) for h in header[-len(per_size) - 1:-1]] == [c for c, _ in per_size]
    for cell, (c, entry) in zip(size_cells, per_size):
        parsed = CELL.match(cell)
        assert parsed, f"{cells[0]} at {c}: unreadable cell {cell!r}"
        accuracy, interval = entry["generated_accuracy"], entry["intervals"]["generated_accuracy"]
        assert parsed["accuracy"] == f"{accuracy:.2f}", f"{cells[0]} at {c}: README {cell!r}, report {accuracy:.4f}"
        if parsed["low"] is not None:
            assert (parsed["low"], parsed["high"]) == (f"{interval[0]:.2f}", f"{interval[1]:.2f}"), f"{cells[0]} at {c}"
        depth = entry["mean_depth"]
        expected = f"{depth:.0f}" if "." not in parsed["depth"] else f"{depth:.1f}"
        assert parsed["depth"] == expected, f"{cells[0]} at {c}: README depth {parsed['depth']}, report {depth:.3f}"
    rho, interval = report["test_seen"]["spearman"], report["test_seen"]["spearman_interval"]
    if rho != rho:  # NaN: a fixed-depth model's depth does not vary
        assert rho_cell == "-"
    else:
        parsed = RHO.match(rho_cell)
        assert parsed, f"{cells[0]}: unreadable rho cell {rho_cell!r}"
        assert (parsed["rho"], parsed["low"], parsed["high"]) == tuple(f"{x:.2f}" for x in (rho, *interval)), cells[0]
