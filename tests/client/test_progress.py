"""Progress bars appear on waits longer than two seconds, and can be switched off."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from helpers import wait_until

import multiengine


def test_long_map_shows_a_bar(
    tc: multiengine.TaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    tc.progress = True
    assert tc.map(lambda x: __import__("time").sleep(0.5) or x, range(24)) == list(range(24))
    err = capsys.readouterr().err
    assert "map" in err and "/24" in err, err  # e.g. "map:  58%|#####     | 14/24 [00:02<...]"


def test_no_bar_when_switched_off_or_short(
    tc: multiengine.TaskClient,
    mec: multiengine.MultiEngineClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tc.progress = False
    tc.map(lambda x: __import__("time").sleep(0.35) or x, range(24))
    mec.progress = True
    mec.execute("x = 1")  # short: no bar even when switched on
    assert capsys.readouterr().err == ""


def test_long_execute_on_engines_shows_a_bar(
    mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    mec.progress = True
    mec.live_output = False
    mec.execute("import time; time.sleep(2.6)", targets=[0, 1])
    err = capsys.readouterr().err
    assert "execute on 2 engines" in err, err


def test_a_long_execute_on_all_engines_has_a_total(
    mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    mec.progress = True
    mec.live_output = False
    mec.execute("import time; time.sleep(2.3)")
    err = capsys.readouterr().err
    assert "execute on 4 engines" in err and "0/4" in err and "4/4" in err, err


def test_the_execute_bar_counts_engines_as_they_answer(
    mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Each engine waits for a file of its own; the test lets them go one at a time and
    sees the bar count each one before it lets the next go."""
    mec.progress = True
    mec.live_output = False
    code = (
        "import os, time\n"
        f"while not os.path.exists({str(tmp_path)!r} + f'/go{{id}}'):\n"
        "    time.sleep(0.01)"
    )
    seen = []

    def err_so_far() -> str:
        seen.append(capsys.readouterr().err)
        return "".join(seen)

    worker = threading.Thread(target=mec.execute, args=(code,), daemon=True)
    worker.start()
    try:
        wait_until(lambda: "0/4" in err_so_far(), message="the bar to appear")
        for n, engine in enumerate(sorted(mec.get_ids())[:3], 1):
            (tmp_path / f"go{engine}").touch()
            wait_until(lambda n=n: f"{n}/4" in err_so_far(), message=f"the bar at {n}/4")
    finally:
        for engine in mec.get_ids():
            (tmp_path / f"go{engine}").touch()
        worker.join(30)
    assert not worker.is_alive()
    assert "4/4" in err_so_far()
