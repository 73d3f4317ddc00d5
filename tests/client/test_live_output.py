"""Live stdout/stderr: what engines print reaches the client while the command runs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import Latch, call_within

import multiengine
from multiengine.client.live import print_output

Event = tuple[int, str, str]


def recorder(
    mec: multiengine.MultiEngineClient, then: Callable[[list[Event]], None] | None = None
) -> list[Event]:
    """Switch live output on and record it as (engine, stream, text); ``then(events)``
    is called after each one arrives."""
    events: list[Event] = []

    def hook(engine: int, name: str, text: str) -> None:
        events.append((engine, name, text))
        if then is not None:
            then(events)

    mec.live_output = True
    mec.output_hook = hook
    return events


def test_output_arrives_while_the_command_runs(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    # After its first line, the command waits for a release that the output hook gives
    # once that line has arrived from both engines: the command can only end if what it
    # prints reaches the client while it runs, not with its result.
    release = latch()

    def on_output(events: list[Event]) -> None:
        if sum(text == "first\n" for _, _, text in events) == 2:
            release.set()

    events = recorder(mec, on_output)
    code = (
        f"import sys\nprint('first')\n{release.wait_code}\n"
        "print('late', file=sys.stderr)\nprint('last')"
    )
    result = call_within(lambda: mec.execute(code, targets=[0, 2]), message="the command")
    assert release.is_set()
    for engine in (0, 2):  # everything printed arrived before the result, in order, by stream
        out = "".join(text for e, n, text in events if e == engine and n == "stdout")
        err = "".join(text for e, n, text in events if e == engine and n == "stderr")
        assert out == "first\nlast\n" and err == "late\n"
    # the result dict keeps it all too
    assert [r["stdout"] for r in result] == ["first\nlast\n"] * 2


def test_many_lines_go_in_few_messages(mec: multiengine.MultiEngineClient) -> None:
    events = recorder(mec)
    result = mec.execute("for i in range(3000): print(i)", targets=1)
    text = "".join(t for _, _, t in events)
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
    events = recorder(mec)
    with pytest.raises(multiengine.CompositeError):
        mec.execute("print('before')\n1/0", targets=0)
    assert [text for _, _, text in events] == ["before\n"]
