"""Progress bars appear on waits longer than two seconds, and can be switched off."""

from __future__ import annotations

import pytest

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
