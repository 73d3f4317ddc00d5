"""How a ResultList shows: In/Out/Err lines per engine, colours only on a terminal."""

from __future__ import annotations

import contextlib
import io

from helpers import plain_repr


def test_result_list_repr_hides_display_and_shows_stderr(mec):
    rl = mec.execute("1+1")
    assert plain_repr(rl).splitlines() == ["<Results List>"] + [
        f"[{i}] In [1]: 1+1" for i in range(4)
    ]
    assert [r["display"]["repr"] for r in rl] == ["2"] * 4
    rl = mec.execute("import sys; sys.stderr.write('oops\\n')", targets=1)
    text = plain_repr(rl)
    assert "[1] In [2]: import sys; sys.stderr.write('oops\\n')" in text
    assert "[1] Err[2]:" in text
    assert "oops" in text


def test_result_list_colours_only_on_a_terminal(mec):
    rl = mec.execute("print(1)", targets=0)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with contextlib.redirect_stdout(Terminal()):
        coloured = repr(rl)
    assert "\x1b[" in coloured
    assert "\x1b[" not in plain_repr(rl)
