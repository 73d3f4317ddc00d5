"""Live stdout/stderr: what engines print reaches the client while the command runs."""

from __future__ import annotations

import time
from typing import Any

import pytest

import multiengine
from multiengine.client.live import print_output


def recorder(mec: multiengine.MultiEngineClient) -> list[tuple[float, int, str, str]]:
    events: list[tuple[float, int, str, str]] = []
    mec.live_output = True
    mec.output_hook = lambda engine, name, text: events.append(
        (time.monotonic(), engine, name, text)
    )
    return events


def test_output_arrives_while_the_command_runs(mec: multiengine.MultiEngineClient) -> None:
    events = recorder(mec)
    code = (
        "import sys, time\nprint('first')\ntime.sleep(0.6)\n"
        "print('late', file=sys.stderr)\nprint('last')"
    )
    result = mec.execute(code, targets=[0, 2])
    done = time.monotonic()
    firsts = [t for t, e, n, text in events if text == "first\n"]
    assert len(firsts) == 2
    assert all(done - t > 0.4 for t in firsts), (
        "the first line must arrive before the command ends, not with it"
    )
    for engine in (
        0,
        2,
    ):  # everything printed arrived, in order, before the result, stream by stream
        out = "".join(text for _, e, n, text in events if e == engine and n == "stdout")
        err = "".join(text for _, e, n, text in events if e == engine and n == "stderr")
        assert out == "first\nlast\n" and err == "late\n"
    assert [r["stdout"] for r in result] == [
        "first\nlast\n"
    ] * 2  # the result dict keeps it all too


def test_many_lines_go_in_few_messages(mec: multiengine.MultiEngineClient) -> None:
    events = recorder(mec)
    result = mec.execute("for i in range(3000): print(i)", targets=1)
    text = "".join(t for _, _, _, t in events)
    assert text == "".join(f"{i}\n" for i in range(3000)) == result[0]["stdout"]
    assert len(events) < 200, f"{len(events)} messages for 3000 lines: output is not batched"


def test_live_output_can_be_switched_off(mec: multiengine.MultiEngineClient) -> None:
    events = recorder(mec)
    mec.live_output = False
    assert mec.execute("print('quiet')", targets=0)[0]["stdout"] == "quiet\n"
    assert events == []


def test_default_hook_prefixes_engine_and_stream(
    mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    mec.live_output = True
    mec.output_hook = print_output
    mec.execute("import sys\nprint('hello')\nprint('careful', file=sys.stderr)", targets=[3])
    captured = capsys.readouterr()
    assert "[stdout:3] hello\n" in captured.out
    assert "[stderr:3] careful\n" in captured.err


def test_live_output_of_a_failing_command(mec: multiengine.MultiEngineClient) -> None:
    events: Any = recorder(mec)
    with pytest.raises(multiengine.CompositeError):
        mec.execute("print('before')\n1/0", targets=0)
    assert [text for _, _, _, text in events] == ["before\n"]
