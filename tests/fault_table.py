"""The fault tables of docs/reliability.md, made from the tests that inject the faults.

A test that injects a fault carries its row of the table::

    @pytest.mark.fault(
        section="engines-that-die",  # the slug of the section's heading
        fault="SIGKILL to an engine mid-`execute` (local)",
        outcome="the call fails at once ...",
        also=["tests/cluster/test_cluster.py::test_other"],  # optional: more tests of the row
    )

(one row per marker; a test may carry several; a parametrized test can carry one per case
with ``pytest.param(..., marks=pytest.mark.fault(...), id="case")``). The markers are
read statically (``ast``; their arguments must be literals), so this needs no test run.

``python tests/fault_table.py`` (``make faults`` runs it after ``pytest -m fault``)
rewrites each table between ``<!-- fault table: SLUG -->`` and ``<!-- end fault table -->``
from the markers and the results the last test run wrote to ``build/fault-results.json``
(``fault_plugin.py``). Rows keep the order they have in the doc; new rows go last.
``tests/project/test_fault_tables.py`` checks that the tables match the markers.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
RESULTS = ROOT / "build" / "fault-results.json"
KEYS = {"section", "fault", "outcome", "also"}
HEADER = "| fault | what happens | tested by | result |\n|---|---|---|---|\n"
BLOCK = re.compile(
    r"<!-- fault table: (?P<slug>[a-z0-9-]+) -->\n(?P<body>.*?)<!-- end fault table -->",
    re.S,
)
RERUN = "run `make faults` (or `python tests/fault_table.py` after a run of the fault tests)"


class FaultTableError(Exception):
    """A fault marker or a fault table that cannot be used as it is."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a fault table: what a ``fault`` marker says, and where it is."""

    section: str
    fault: str
    outcome: str
    tests: tuple[str, ...]  # node ids: the marked test (or case) first, then ``also``
    where: str  # file:line of the marker

    def cells(self) -> tuple[str, str, str]:
        tested_by = ", ".join(f"`{t}`" for t in self.tests)
        return (cell(self.fault), cell(self.outcome), tested_by)


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


# ------------------------------------------------------------------ the markers
def _is_fault_mark(node: ast.AST) -> bool:
    """``pytest.mark.fault(...)``"""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "fault"
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == "mark"
        and isinstance(node.func.value.value, ast.Name)
        and node.func.value.value.id == "pytest"
    )


def _is_call_to(node: ast.AST, dotted: str) -> bool:
    return isinstance(node, ast.Call) and ast.unparse(node.func) == dotted


def _row(mark: ast.Call, where: str, node_id: str) -> Row:
    if mark.args:
        raise FaultTableError(f"{where}: give the fault marker's fields by name ({sorted(KEYS)})")
    fields: dict[str, Any] = {}
    for kw in mark.keywords:
        if kw.arg not in KEYS:
            raise FaultTableError(f"{where}: unknown field {kw.arg!r} (known: {sorted(KEYS)})")
        try:
            fields[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            raise FaultTableError(f"{where}: the fault marker's {kw.arg!r} must be a literal")
    for key in ("section", "fault", "outcome"):
        if not isinstance(fields.get(key), str) or not fields[key].strip():
            raise FaultTableError(f"{where}: the fault marker needs {key}='...'")
    also = fields.get("also", [])
    if not isinstance(also, list | tuple) or not all(isinstance(t, str) for t in also):
        raise FaultTableError(f"{where}: also=[...] lists node ids ('tests/x.py::test_y')")
    return Row(fields["section"], fields["fault"], fields["outcome"], (node_id, *also), where)


def _tests(
    tree: ast.Module, path: str
) -> Iterable[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name.startswith("test"):
                yield f"{path}::{node.name}", node
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                    if sub.name.startswith("test"):
                        yield f"{path}::{node.name}::{sub.name}", sub


def _param_marks(param: ast.Call) -> list[ast.expr]:
    for kw in param.keywords:
        if kw.arg == "marks":
            return list(kw.value.elts) if isinstance(kw.value, ast.List | ast.Tuple) else [kw.value]
    return []


def scan(root: Path = ROOT) -> tuple[list[Row], set[str]]:
    """Every ``fault`` marker under ``root/tests``, and the node ids of all test functions."""
    rows: list[Row] = []
    functions: set[str] = set()
    for file in sorted((root / "tests").rglob("test_*.py")):
        path = file.relative_to(root).as_posix()
        tree = ast.parse(file.read_text(), path)
        placed: set[int] = set()
        for node_id, fn in _tests(tree, path):
            functions.add(node_id)
            for deco in fn.decorator_list:
                if _is_fault_mark(deco):
                    assert isinstance(deco, ast.Call)
                    rows.append(_row(deco, f"{path}:{deco.lineno}", node_id))
                    placed.add(id(deco))
                elif _is_call_to(deco, "pytest.mark.parametrize"):
                    for param in ast.walk(deco):
                        if not _is_call_to(param, "pytest.param"):
                            continue
                        assert isinstance(param, ast.Call)
                        for mark in _param_marks(param):
                            if not _is_fault_mark(mark):
                                continue
                            assert isinstance(mark, ast.Call)
                            where = f"{path}:{mark.lineno}"
                            ids = [k.value for k in param.keywords if k.arg == "id"]
                            if not (ids and isinstance(ids[0], ast.Constant)):
                                raise FaultTableError(
                                    f"{where}: a pytest.param with a fault marker needs id='...'"
                                )
                            rows.append(_row(mark, where, f"{node_id}[{ids[0].value}]"))
                            placed.add(id(mark))
        for node in ast.walk(tree):
            if _is_fault_mark(node) and id(node) not in placed:
                raise FaultTableError(
                    f"{path}:{getattr(node, 'lineno', '?')}: a fault marker goes on a test "
                    "function (a decorator) or on one case (pytest.param(..., marks=...))"
                )
    for row in rows:
        for t in row.tests[1:]:
            if t.split("[", 1)[0] not in functions:
                raise FaultTableError(f"{row.where}: also names {t!r}, which is no test")
    return rows, functions


# ------------------------------------------------------------------ the document
def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def blocks(doc: str) -> list[re.Match[str]]:
    """The fault tables of ``doc``, each checked to sit in the section its slug names."""
    found = list(BLOCK.finditer(doc))
    for m in found:
        headings = re.findall(r"^## (.+)$", doc[: m.start()], re.M)
        if not headings or slug(headings[-1]) != m["slug"]:
            raise FaultTableError(
                f"docs/reliability.md: the fault table {m['slug']!r} is not in the section "
                f"'## ...' whose anchor is #{m['slug']}"
            )
    slugs = [m["slug"] for m in found]
    if len(set(slugs)) != len(slugs):
        raise FaultTableError("docs/reliability.md: a section has two fault tables")
    outside = BLOCK.sub("", doc)
    if re.search(r"^\| fault \| what happens \| tested by", outside, re.M):
        raise FaultTableError(
            "docs/reliability.md: a fault table outside <!-- fault table: SLUG --> ... "
            "<!-- end fault table --> (the tables are made from the tests' fault markers)"
        )
    return found


def split_row(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def doc_rows(body: str) -> list[list[str]]:
    """The cells of a table's rows (no header, no separator)."""
    lines = [ln for ln in body.splitlines() if ln.startswith("|")]
    return [split_row(ln) for ln in lines[2:]]


# ------------------------------------------------------------------ the results
def load_results(path: Path = RESULTS) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def result_of(row: Row, results: dict[str, Any] | None) -> str:
    """The worst outcome of the row's tests in the last run (a test without a case id
    stands for all its cases)."""
    if results is None:
        return "not run"
    tests: dict[str, Any] = results["tests"]
    outcomes: list[str] = []
    for t in row.tests:
        found = [v["outcome"] for k, v in tests.items() if k == t or k.startswith(t + "[")]
        outcomes.extend(found or ["not run"])
    for worst in ("failed", "not run", "skipped"):
        if worst in outcomes:
            return worst
    return "passed"


def run_line(rows: list[Row], results: dict[str, Any] | None) -> str:
    if results is None:
        return "_Results: not run yet (`make faults`)._"
    counts: dict[str, int] = {}
    for row in rows:
        r = result_of(row, results)
        counts[r] = counts.get(r, 0) + 1
    order = ["passed", "failed", "skipped", "not run"]
    tally = ", ".join(f"{counts[r]} {r}" for r in order if r in counts)
    return (
        f"_Results: the run of `{results['command']}` on {results['date']} at commit "
        f"`{results['commit']}`: {len(rows)} row{'' if len(rows) == 1 else 's'}, {tally}._"
    )


# ------------------------------------------------------------------ making the tables
def by_section(rows: list[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for row in rows:
        out.setdefault(row.section, []).append(row)
    return out


def table(rows: list[Row], old_body: str, results: dict[str, Any] | None) -> str:
    """The table of one section: rows in the order of ``old_body`` (new ones last)."""
    order = {r[0]: i for i, r in enumerate(doc_rows(old_body)) if r}
    ranked = sorted(
        enumerate(rows), key=lambda ir: (order.get(ir[1].cells()[0], len(order)), ir[0])
    )
    lines = [HEADER]
    for _, row in ranked:
        lines.append("| " + " | ".join([*row.cells(), result_of(row, results)]) + " |\n")
    return "".join(lines) + "\n" + run_line(rows, results) + "\n"


def check_sections(rows: list[Row], found: list[re.Match[str]]) -> None:
    slugs = {m["slug"] for m in found}
    for row in rows:
        if row.section not in slugs:
            raise FaultTableError(
                f"{row.where}: no fault table for section {row.section!r} in docs/reliability.md"
                f" (tables: {sorted(slugs)})"
            )


def render(doc: str, rows: list[Row], results: dict[str, Any] | None) -> str:
    found = blocks(doc)
    check_sections(rows, found)
    sections = by_section(rows)

    def replace(m: re.Match[str]) -> str:
        body = table(sections.get(m["slug"], []), m["body"], results)
        return f"<!-- fault table: {m['slug']} -->\n{body}<!-- end fault table -->"

    return BLOCK.sub(replace, doc)


def problems(root: Path = ROOT) -> list[str]:
    """What differs between the doc's fault tables and the markers (results aside)."""
    try:
        rows, _ = scan(root)
        doc = (root / "docs" / "reliability.md").read_text()
        found = blocks(doc)
        check_sections(rows, found)
    except FaultTableError as e:
        return [str(e)]
    out: list[str] = []
    sections = by_section(rows)
    for m in found:
        want = sorted(r.cells() for r in sections.get(m["slug"], []))
        have = sorted(tuple(c[:3]) for c in doc_rows(m["body"]))
        for cells in want:
            if cells not in have:
                out.append(f"section {m['slug']}: no row for the marker {cells}")
        for cells in have:
            if cells not in want:
                out.append(f"section {m['slug']}: a row from no marker (stale?) {cells}")
    return out


def main() -> int:
    try:
        rows, _ = scan()
        doc = DOC.read_text()
        results = load_results()
        new = render(doc, rows, results)
    except FaultTableError as e:
        print(f"fault_table: {e}", file=sys.stderr)
        return 1
    if new != doc:
        DOC.write_text(new)
    where = f"the run of {results['date']}" if results else "no run (build/fault-results.json)"
    tested = len({t for r in rows for t in r.tests})
    print(f"docs/reliability.md: {len(rows)} fault rows, {tested} tests; results from {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
