"""The long harnesses of benchmarks/ still run, in miniature.

They are not in the suite's timing (figures come from full runs, benchmarks/README.md),
but a harness that no longer speaks the protocol reports nothing useful: a change of
the wire (replay stamps, say) must not leave one behind. Each run here is a small
version of the real one; it must finish with exit status 0 and the rows a reader looks
for, with numbers in them. Each harness ends every process it starts by pid.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=200,
        env=env,
    )


def test_many_engines_simulated_engines_register_work_and_are_detected() -> None:
    done = run(
        "many_engines.py",
        *("--sizes", "40", "--per", "20", "--repeat", "1", "--idle", "0.3"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = dict(
        (cells[0], cells[1])
        for line in done.stdout.splitlines()
        if (cells := [c.strip() for c in line.strip("|").split("|")]) and len(cells) == 2
    )
    for row in (
        "registration (s)",
        "idle controller CPU (% of a core)",
        "execute('pass'), all, median (ms)",
        "push 1 MB to all, median (s)",
        "silent engine detected after (s)",
    ):
        assert re.match(r"\d+(\.\d+)?\b", rows.get(row, "")), (row, done.stdout)


def test_soak_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = run(
        "soak.py", "--minutes", "0.1", "--clients", "2", "--engines", "2", "--json", str(out)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["dropped_messages"] == 0
    assert sum(figures["operations"].values()) > 0
    assert figures["controller_rss_mb"]["max"] > 0


def test_ipython_engine_harness_reports_both_kinds_of_engine() -> None:
    pytest.importorskip("IPython")
    done = run("ipython_engine.py", "--calls", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.strip("|").split("|") for line in done.stdout.splitlines()[2:]]
    assert [r[0].strip() for r in rows] == [
        "cluster start, 1 engine (s)",
        "execute('pass'), median (ms)",
        "execute('x = 1\\nx'), median (ms)",
    ]
    for r in rows:
        assert all(re.fullmatch(r"\d+\.\d+", c.strip()) for c in r[1:]), done.stdout


def test_round_trip_harness_gives_raw_zmq_and_execute_rows() -> None:
    done = run("round_trip.py", "--calls", "50", "-n", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"raw zmq round trip .*: \d+ / \d+, \d+ / \d+", done.stdout), done.stdout
    for row in ("execute('pass'), 1 engine", "execute('pass'), all 2 engines"):
        line = next((x for x in done.stdout.splitlines() if x.startswith(row)), "")
        assert re.search(r"\s\d+\s+\d+\.\d\s+client \d+, controller \d+, engines? \d+$", line), (
            row,
            done.stdout,
        )


def test_scatter_cpu_times_the_scatter_and_each_process_cpu() -> None:
    done = run("scatter_cpu.py", "-n", "2", "--rounds", "1")
    assert done.returncode == 0, done.stderr
    (row,) = [r for r in done.stdout.splitlines() if r.startswith("round 0")]
    assert re.search(r"median +[\d.]+ ms = +\d+ MB/s", row), row
    for process in ("client", "controller", "engine 0", "engine 1"):
        assert re.search(rf"{process} [\d.]+", row), row


def test_hub_tasks_runs_every_task_through_the_hub() -> None:
    done = run("hub_tasks.py", "-n", "600", "--rounds", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"CPU per task \(µs\), rounds from least: \d+\.\d", done.stdout), done.stdout
