"""docs/reliability.md's fault tables are made from the tests' ``fault`` markers
(tests/fault_table.py): every marker has its row, in its section, with the same text,
and every row comes from a marker. Read statically: no fault test runs here."""

from __future__ import annotations

import textwrap
from pathlib import Path

import fault_table
import pytest


def test_the_fault_tables_match_the_fault_markers() -> None:
    problems = fault_table.problems()
    assert not problems, (
        "docs/reliability.md's fault tables and the tests' @pytest.mark.fault markers "
        "differ:\n  " + "\n  ".join(problems) + f"\n{fault_table.RERUN}"
    )


def test_there_are_fault_rows_in_every_section() -> None:
    rows, _ = fault_table.scan()
    sections = {r.section for r in rows}
    doc = fault_table.DOC.read_text()
    assert {m["slug"] for m in fault_table.blocks(doc)} == sections
    assert len(rows) >= 30


# ---------------------------------------------------------- the checker itself, on a toy
DOC = """# Reliability

## Engines that die

<!-- fault table: engines-that-die -->
| fault | what happens | tested by | result |
|---|---|---|---|
| old row | gone | `tests/test_x.py::test_gone` | passed |
<!-- end fault table -->
"""

TESTS = """
import pytest

@pytest.mark.fault(section="engines-that-die", fault="a | kill", outcome="it dies")
def test_kill():
    pass

@pytest.mark.parametrize("n", [1, pytest.param(2, id="two", marks=pytest.mark.fault(
    section="engines-that-die", fault="two", outcome="b", also=["tests/test_x.py::test_kill"]
))])
def test_param(n):
    pass
"""


def toy(tmp_path: Path, tests: str = TESTS, doc: str = DOC) -> Path:
    (tmp_path / "tests").mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(textwrap.dedent(tests))
    (tmp_path / "docs" / "reliability.md").write_text(doc)
    return tmp_path


def test_a_new_marker_and_a_stale_row_are_reported_then_rendered(tmp_path: Path) -> None:
    root = toy(tmp_path)
    problems = fault_table.problems(root)
    assert len(problems) == 3, problems
    assert any("no row for the marker ('a \\\\| kill'" in p for p in problems), problems
    assert any("from no marker (stale?) ('old row'" in p for p in problems), problems
    rows, _ = fault_table.scan(root)
    assert rows[1].tests == ("tests/test_x.py::test_param[two]", "tests/test_x.py::test_kill")
    results = {
        "date": "2025-01-01",
        "commit": "abc",
        "command": "pytest -m fault",
        "tests": {"tests/test_x.py::test_kill": {"outcome": "passed"}},
    }
    doc = fault_table.render(DOC, rows, results)
    assert "| a \\| kill | it dies | `tests/test_x.py::test_kill` | passed |" in doc
    assert "| `tests/test_x.py::test_param[two]`, `tests/test_x.py::test_kill` | not run |" in doc
    assert "old row" not in doc
    assert (
        "_Results: the run of `pytest -m fault` on 2025-01-01 at commit `abc`: "
        "2 rows, 1 passed, 1 not run._"
    ) in doc
    (root / "docs" / "reliability.md").write_text(doc)
    assert fault_table.problems(root) == []


@pytest.mark.parametrize(
    ("tests", "message"),
    [
        (
            'import pytest\n@pytest.mark.fault(section="engines-that-die", fault="f")\n'
            "def test_a(): pass\n",
            "needs outcome=",
        ),
        (
            'import pytest\n@pytest.mark.fault(section="nowhere", fault="f", outcome="o")\n'
            "def test_a(): pass\n",
            "no fault table for section 'nowhere'",
        ),
        (
            'import pytest\nF = "f"\n@pytest.mark.fault(section="engines-that-die", fault=F, '
            'outcome="o")\ndef test_a(): pass\n',
            "'fault' must be a literal",
        ),
        (
            'import pytest\n@pytest.mark.fault(section="engines-that-die", fault="f", outcome="o",'
            ' also=["tests/test_x.py::test_b"])\ndef test_a(): pass\n',
            "which is no test",
        ),
        (
            'import pytest\npytestmark = pytest.mark.fault(section="engines-that-die", fault="f", '
            'outcome="o")\n',
            "goes on a test function",
        ),
    ],
    ids=["no outcome", "unknown section", "not a literal", "unknown also", "module mark"],
)
def test_bad_markers_are_named_with_their_place(tmp_path: Path, tests: str, message: str) -> None:
    (problem,) = fault_table.problems(toy(tmp_path, tests))
    assert problem.startswith("tests/test_x.py:"), problem
    assert message in problem, problem


def test_a_table_in_the_wrong_section_or_outside_a_block_is_refused(tmp_path: Path) -> None:
    wrong = DOC.replace("## Engines that die", "## Engines that stall")
    (problem,) = fault_table.problems(toy(tmp_path, "", wrong))
    assert "not in the section" in problem
    bare = "## Engines that die\n\n| fault | what happens | tested by |\n|---|---|---|\n"
    (problem,) = fault_table.problems(toy(tmp_path / "b", "", bare))
    assert "outside" in problem
