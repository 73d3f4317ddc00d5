"""Records the results of the fault tests (``@pytest.mark.fault``; see fault_table.py).

Loaded by conftest.py. The tests a fault marker names with ``also=[...]`` get a ``fault``
marker too (``also_of=`` the marked test), so ``pytest -m fault`` runs them. When a session
ran any fault test, its results (node id -> passed / failed / skipped, with the markers)
go to ``build/fault-results.json``, which ``python tests/fault_table.py`` turns into the
tables of docs/reliability.md.
"""

from __future__ import annotations

import datetime
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

WORSE = {"passed": 0, "skipped": 1, "failed": 2}


def _git(root: Path, *args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


class FaultRecorder:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.markers: dict[str, list[dict[str, Any]]] = {}
        self.outcomes: dict[str, str] = {}

    @pytest.hookimpl(tryfirst=True)  # before -m deselects: the ``also`` tests are marked first
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        also: dict[str, str] = {}
        for item in items:
            for mark in item.iter_markers("fault"):
                for t in mark.kwargs.get("also", []):
                    also.setdefault(t, item.nodeid)
        for item in items:
            base = item.nodeid.split("[", 1)[0]
            of = also.get(item.nodeid) or also.get(base)
            if of is not None:
                item.add_marker(pytest.mark.fault(also_of=of))
            marks = [dict(m.kwargs) for m in item.iter_markers("fault")]
            if marks:
                self.markers[item.nodeid] = marks

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.markers:
            return
        old = self.outcomes.get(report.nodeid, "passed")  # setup, call, teardown: the worst
        self.outcomes[report.nodeid] = max(old, report.outcome, key=lambda o: WORSE.get(o, 2))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.outcomes:
            return
        root = self.config.rootpath
        commit = _git(root, "rev-parse", "--short", "HEAD") or "unknown"
        if _git(root, "status", "--porcelain", "--untracked-files=no"):
            commit += " with uncommitted changes"
        args = self.config.invocation_params.args
        data = {
            "date": datetime.date.today().isoformat(),
            "commit": commit,
            "command": " ".join(["pytest", *map(shlex.quote, args)]),
            "tests": {
                node: {"outcome": self.outcomes[node], "faults": self.markers[node]}
                for node in sorted(self.outcomes)
            },
        }
        out = root / "build" / "fault-results.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(data, indent=1) + "\n")
