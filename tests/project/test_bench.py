"""``multiengine bench`` in miniature: every row of the table, ``--json``, the Ray adapter.

The runs are real (clusters of real processes, one at a time, in a child Python so that
the bench's own SIGALRM watchdog does not meet pytest-timeout's), with a plan of a few
samples per row; nothing asserts a timing, only that each row has a number (or says
why it has none), which call made it, and that nothing is left running. The pure logic
of the report (the best peer, the goals) is tested on made-up outcomes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli

from multiengine.bench import METRICS
from multiengine.bench.measure import NOT_APPLICABLE, Outcome
from multiengine.bench.report import best_peer, table
from multiengine.bench.systems import NOT_BUILT, Dask, IPyParallel, MultiEngine, Ray

ROOT = Path(__file__).resolve().parents[2]
TINY = "Plan(starts=2, latency=20, warmup=2, transfers=2, maps=1, budget=2.0)"
KEYS = [m.key for m in METRICS]


def _child(code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_miniature_run_fills_every_row_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = _child(
        "from multiengine.bench import run, Plan\n"
        f"run(2, many=3, json_path={str(out)!r}, plan={TINY})\n",
        timeout=150,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert [r["key"] for r in figures["rows"]] == KEYS
    assert figures["engines"] == 2 and figures["many"] == 3
    me = figures["systems"]["multiengine"]
    assert me["unavailable"] is None and me["leftovers"] == []
    for key, row in me["rows"].items():
        assert row["method"], key
        assert row["unit"] == next(m.unit for m in METRICS if m.key == key)
        if key == "push_shared" and row["value"] is None:  # until push takes shared=True
            assert row["note"] == NOT_BUILT
            continue
        assert isinstance(row["value"], float) and row["value"] > 0, (key, row)
        assert row["samples"] >= 1, (key, row)
    # the table (printed too) has every row, with its label and a figure
    lines = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if "|" in line}
    assert "3 engines on one host: start (s)" in lines
    for m in METRICS:
        label = m.label.format(many=3) + f" ({m.unit})"
        assert label in lines, (label, done.stdout)
        figure = lines[label].split("|")[2].strip()
        assert re.fullmatch(r"[\d,]+(\.\d+)?\*?", figure) or figure == NOT_BUILT, (label, figure)


def test_bad_engine_counts_are_usage_errors() -> None:
    bad = run_cli("bench", "-n", "0")
    assert bad.returncode == 2 and "-n must be at least 1" in bad.stderr
    bad = run_cli("bench", "--many", "-1")
    assert bad.returncode == 2 and "--many must not be negative" in bad.stderr


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_json_dash_prints_only_json() -> None:
    done = _child(
        "import io, sys\n"
        "from multiengine.bench import run, Plan\n"
        f"run(1, json_path='-', plan={TINY})\n",
        timeout=150,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)  # nothing but the JSON on stdout
    assert figures["systems"]["multiengine"]["rows"]["rtt1"]["value"] > 0
    assert figures["multiengine_vs_best_peer"] == {}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ray_adapter_in_miniature_measures_its_rows_and_leaves_nothing() -> None:
    # a local Ray cluster starts in 2.5-4 s on the 2-core VM: cheap enough to run here
    pytest.importorskip("ray", reason="Ray comes with the bench extra: pip install -e '.[bench]'")
    done = _child(
        "import json\n"
        "from multiengine.bench.measure import measure, Plan\n"
        "from multiengine.bench.systems import Ray\n"
        f"o = measure(Ray(), 2, {TINY})\n"
        "print(json.dumps({'values': o.values, 'leftovers': o.leftovers,"
        " 'unavailable': o.unavailable}))\n",
        timeout=150,
    )
    assert done.returncode == 0, done.stderr
    o = json.loads(done.stdout.splitlines()[-1])
    assert o["unavailable"] == "" and o["leftovers"] == [], o
    many = {m.key for m in METRICS if m.many}
    for key in set(KEYS) - many:
        v = o["values"][key]
        if key in ("rtt1", "rtt1_p90"):  # Ray has no code strings to execute
            assert v == NOT_APPLICABLE
        else:
            assert isinstance(v, float) and v > 0, (key, v)


def test_every_method_is_in_benchmarks_readme() -> None:
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    for system in (MultiEngine(), IPyParallel(), Dask(), Ray()):
        for key, method in system.methods.items():
            assert key in KEYS, (system.name, key)
            assert method in readme, (system.name, key, method)


def _outcome(name: str, **values: float | str) -> Outcome:
    return Outcome(name, version="1", values=dict(values))


def test_best_peer_is_the_fastest_one_with_a_number() -> None:
    rows = {m.key: m for m in METRICS}
    me = _outcome("multiengine", rtt1=0.5, push=2.0, tasks=1000.0)
    peers = [
        _outcome("ipyparallel", rtt1=3.0, push=0.5, tasks="error (boom)"),
        _outcome("ray", rtt1=NOT_APPLICABLE, push=4.0, tasks=500.0),
        Outcome("dask", unavailable="not installed"),
    ]
    assert best_peer(me, peers, rows["rtt1"]) == ("ipyparallel", 6.0)  # lower is better
    assert best_peer(me, peers, rows["push"]) == ("ray", 0.5)  # higher is better
    assert best_peer(me, peers, rows["tasks"]) == ("ray", 2.0)
    assert best_peer(me, peers, rows["gather"]) is None
    text = table([me, *peers], 2)
    assert "6.00x (ipyparallel)" in text and "0.50x (ray)" in text
    assert "n/a (not installed)" in text


def test_goals_say_ok_or_missed_relative_ones_too() -> None:
    me = _outcome("multiengine", rtt1=0.4, call1=0.5, shutdown=0.1, push=3.0)
    text = table([me], 2)
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if "|" in line}
    assert (
        lines["no-op function call, 1 engine, median (ms)"]
        .rstrip(" |")
        .endswith("<= 1.5 x rtt1 ok")
    )
    assert "<= 0.35 MISSED" in lines["execute('pass'), 1 engine, median (ms)"]
    assert "<= 0.15 ok" in lines["shutdown until every process is gone (s)"]
    assert not any("engines on one host" in k for k in lines)  # --many rows only if measured
    me.many, me.values["many_start"] = 128, 1.5
    peer = _outcome("ray", rtt1=NOT_APPLICABLE)
    row = next(line for line in table([me, peer], 2).splitlines() if "128 engines" in line)
    assert [c.strip() for c in row.split("|")[2:4]] == ["1.500", NOT_APPLICABLE]
