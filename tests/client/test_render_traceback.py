"""How IPython shows engine errors (``_render_traceback_``), without processes: each
failing engine's own traceback, engines that failed alike once, none of the client's
frames, a bounded length, no colours off a terminal."""

from __future__ import annotations

import pickle

from multiengine import errors


def remote(engine: int, exc: BaseException, number: int = 3) -> BaseException:
    tb = (
        "Traceback (most recent call last):\n"
        f'  File "<engine-{engine}-input-{number}>", line 1, in <module>\n'
        "    boom()\n"
        f"{type(exc).__name__}: {exc}\n"
    )
    exc.__cause__ = errors.RemoteTraceback(engine, "execute", tb)
    return exc


def composite(excs: list[BaseException]) -> errors.CompositeError:
    return errors.CompositeError(
        "one or more exceptions from call to method: execute", [(type(e), e, None) for e in excs]
    )


def test_one_failing_engine() -> None:
    lines = composite([remote(2, ValueError("bad"))])._render_traceback_()
    assert lines == [
        "[engine 2] ValueError: bad",
        "Traceback (most recent call last):",
        '  File "<engine-2-input-3>", line 1, in <module>',
        "    boom()",
        "ValueError: bad",
        "",
        "CompositeError: one or more exceptions from call to method: execute",
    ]


def test_engines_that_failed_alike_are_shown_once() -> None:
    excs = [remote(i, ValueError("bad"), number=3 + i) for i in range(3)]
    excs.append(remote(3, KeyError("k")))
    lines = composite(excs)._render_traceback_()
    assert lines[0] == "[engines 0, 1, 2] ValueError: bad"
    assert lines.count("Traceback (most recent call last):") == 2
    assert "[engine 3] KeyError: 'k'" in lines


def test_many_different_failures_stay_short() -> None:
    excs = [remote(i, ValueError(f"bad {i}")) for i in range(50)]
    lines = composite(excs)._render_traceback_()
    assert lines.count("Traceback (most recent call last):") == errors.RENDER_TRACEBACKS
    assert "[engine 49] ValueError: bad 49" in lines  # one line each past the limit
    assert len(lines) < 50 + 6 * errors.RENDER_TRACEBACKS + 3


def test_errors_without_an_engine_traceback() -> None:
    lost = errors.EngineError("engine 1 died (signal 9)")
    lost.__cause__ = errors.RemoteTraceback(1, "execute", None)
    unknown = remote(0, errors.RemoteError("WeirdError", "odd", "tb"))
    lines = composite([lost, unknown])._render_traceback_()
    assert "[engine 1] EngineError: engine 1 died (signal 9)" in lines
    assert "[engine 0] WeirdError: odd" in lines
    assert not any("\x1b[" in line for line in lines)  # not a terminal here


def test_an_engine_exception_raised_as_it_is() -> None:
    exc = remote(4, ZeroDivisionError("division by zero"))
    exc.add_note("a note")
    render = errors.render_remote_traceback(exc)
    assert render()[0] == "[engine 4] ZeroDivisionError: division by zero"
    assert render()[-1] == "a note"
    exc._render_traceback_ = render  # type: ignore[attr-defined]
    again = pickle.loads(pickle.dumps(exc))  # it still pickles, the renderer with it
    assert again.__cause__ is None  # pickling drops the cause: no engine to name
    assert again._render_traceback_() == ["ZeroDivisionError: division by zero", "a note"]
