"""run(): a local file compiled here (a SyntaxError is raised here) and executed on the
engines."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import assert_remote, pending

import multiengine


@pytest.fixture
def pyfile(tmp_path: Path) -> Path:
    f = tmp_path / "script.py"
    f.write_text("a = 10\nb=30")
    return f


def test_run(mec: multiengine.MultiEngineClient, pyfile: Path) -> None:
    # seed §B: IMultiEngineExtrasTestCase.testRun
    r = mec.run(str(pyfile))
    assert len(r) == 4
    assert mec.pull(("a", "b")) == 4 * [[10, 30]]


def test_run_nonblocking(mec: multiengine.MultiEngineClient, pyfile: Path) -> None:
    # seed §B: ISynchronousMultiEngineExtrasTestCase.testRunNonblocking
    assert len(pending(mec.run(str(pyfile), block=False)).r) == 4
    assert mec.pull(("a", "b")) == 4 * [[10, 30]]


def test_run_syntax_error_is_local(mec: multiengine.MultiEngineClient, tmp_path: Path) -> None:
    # seed §2.2: run() compiles the file locally, so a SyntaxError is raised locally and
    # nothing is executed.
    f = tmp_path / "bad.py"
    f.write_text("a = (\n")
    with pytest.raises(SyntaxError):
        mec.run(str(f))
    assert_remote(IndexError, mec.get_result)


def test_run_file(mec, tmp_path):
    f = tmp_path / "script.py"
    f.write_text("a = 10\nb=30\n")
    r = mec.run(f)
    assert type(r) is list
    assert mec.pull(("a", "b")) == [[10, 30]] * 4
    bad = tmp_path / "bad.py"
    bad.write_text("7=5\n")
    with pytest.raises(SyntaxError):
        mec.run(bad)
