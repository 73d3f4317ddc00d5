"""What %px shows, through a real InteractiveShell against real engines: values as
``Out[ENGINE:N]``, output once, engine tracebacks without multiengine's frames,
rich reprs, %pxresult, %pxconfig, --local, slices of targets and the magics' help."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import RICH_PER_ENGINE

import multiengine
from multiengine.cluster.cluster import Cluster

pytest.importorskip("IPython", reason="the magics need IPython (pip install multiengine[ipython])")
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402

from multiengine.magics import ParallelMagics  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ip(mec: multiengine.MultiEngineClient) -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "multiengine")
    magics = shell.magics_manager.registry["ParallelMagics"]
    magics.targets, magics.block, magics.verbose, magics._last = None, None, True, None
    mec.activate()
    yield shell
    magics.client = None
    magics.targets, magics.block, magics.verbose, magics._last = None, None, True, None
    shell.display_formatter.active_types = shell.display_formatter.format_types


def magics_of(ip: InteractiveShell) -> ParallelMagics:
    found = ip.magics_manager.registry["ParallelMagics"]
    assert isinstance(found, ParallelMagics)
    return found


def out_lines(text: str) -> list[str]:
    """The ``Out[ENGINE:N]`` lines (not IPython's own ``Out[N]``)."""
    return [line for line in text.splitlines() if re.match(r"Out\[\d+:\d+\]", line)]


def test_values_show_as_out_engine_number(
    ip: InteractiveShell, mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell("%px a = id * 111")
    assert out_lines(capsys.readouterr().out) == []  # an assignment shows nothing
    ip.run_cell("%px a")
    out = capsys.readouterr().out
    assert out_lines(out) == [f"Out[{i}:2]: {i * 111}" for i in range(4)]
    assert "In [" not in out and "<Results List>" not in out
    ip.run_cell("%px {'k': list(range(30)), 'id': id}")  # a long pprint goes under its prompt
    out = capsys.readouterr().out
    assert "Out[0:3]:\n{'id': 0,\n 'k': [0,\n" in out


def test_output_appears_once(
    ip: InteractiveShell, mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell("%%px\nprint('hello', id)\nimport sys; print('oops', file=sys.stderr)\nid * 2")
    captured = capsys.readouterr()
    for i in range(4):
        assert captured.out.count(f"[stdout:{i}] hello {i}\n") == 1
        assert captured.err.count(f"[stderr:{i}] oops\n") == 1
    assert out_lines(captured.out) == [f"Out[{i}:1]: {i * 2}" for i in range(4)]
    mec.live_output = False  # not shown live: %px shows it after the run, still once
    ip.run_cell("%px print('later', id)")
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "later" in line] == [
        f"[stdout:{i}] later {i}" for i in range(4)
    ]


def test_an_error_shows_the_engines_tracebacks(
    ip: InteractiveShell, mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell("%%px\ndef f(x):\n    return 1 / x\n")
    result = ip.run_cell("%px -t 1:3 f(id - 1)")
    assert isinstance(result.error_in_exec, multiengine.CompositeError)
    out = capsys.readouterr().out
    lines = out.splitlines()
    start = lines.index("[engine 1] ZeroDivisionError: division by zero")
    assert lines[start + 1] == "Traceback (most recent call last):"
    assert '  File "<engine-1-input-2>", line 1, in <module>' in lines
    assert '  File "<engine-1-input-1>", line 2, in f' in lines
    assert lines[-1] == "CompositeError: one or more exceptions from call to method: execute"
    assert "multiengine" not in out.replace("CompositeError", "")  # none of our frames
    assert "[engine 2]" not in out  # engine 2 did not fail
    # every engine failing alike: one traceback, every engine named
    ip.run_cell("%px 1/0")
    out = capsys.readouterr().out
    assert "[engines 0, 1, 2, 3] ZeroDivisionError: division by zero" in out
    assert out.count("Traceback (most recent call last):") == 1
    # an engine error raised as it is (tc.map): its own traceback too
    ip.user_ns["mec"] = mec
    result = ip.run_cell("mec.map(lambda x: 1 / x, [1, 0, 2, 3])")
    assert isinstance(result.error_in_exec, multiengine.CompositeError)
    out = capsys.readouterr().out
    assert "[engine 1] ZeroDivisionError: division by zero" in out
    assert "multiengine/" not in out


def test_a_direct_engine_error_renders_its_traceback(
    ip: InteractiveShell, tc: multiengine.TaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.user_ns["tc"] = tc
    result = ip.run_cell("tc.map(lambda x: 1 / x, [0])")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("[engine ") and lines[0].endswith(
        "] ZeroDivisionError: division by zero"
    )
    assert "<lambda>" in out and "multiengine/" not in out


def test_bad_input_is_one_line(
    ip: InteractiveShell, mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    for cell, expected in [
        ("%px -t 9 a = 1", "InvalidEngineID: "),
        ("%px -t x: a = 1", "UsageError: -t 'x:': expected 'all', engine ids"),
        ("%px -t 7: a = 1", "UsageError: -t '7:': no engine in that slice of the engines"),
        ("%px --nosuch a = 1", "UsageError: unknown option --nosuch"),
        ("%%px -t 0 a = 1\nb = 2", "UsageError: %%px takes options on its first line"),
        ("%pxconfig -t 1:x", "UsageError: -t '1:x': expected 'all'"),
    ]:
        ip.run_cell(cell)
        captured = capsys.readouterr()
        text = captured.out + captured.err
        assert expected in text, (cell, text)
        assert "Traceback" not in text and "multiengine/" not in text
    assert mec.execute("b = 2")[0]["number"] == 1  # none of them ran anything


def test_target_slices(
    ip: InteractiveShell, mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell("%px -t ::2 id")
    out = capsys.readouterr().out
    assert "Parallel execution on engines: [0, 2]" in out
    assert out_lines(out) == ["Out[0:1]: 0", "Out[2:1]: 2"]
    ip.run_cell("%px -t 1:3 id")
    assert out_lines(capsys.readouterr().out) == ["Out[1:1]: 1", "Out[2:2]: 2"]
    ip.run_cell("%px -t -1: id")
    assert out_lines(capsys.readouterr().out) == ["Out[3:1]: 3"]
    ip.run_cell("%px --targets=0,3 id")
    assert out_lines(capsys.readouterr().out) == ["Out[0:2]: 0", "Out[3:2]: 3"]
    ip.run_cell("%px -t 1,2 -id")  # a word with one '-' that is no option is code
    assert out_lines(capsys.readouterr().out) == ["Out[1:2]: -1", "Out[2:3]: -2"]
    ip.run_cell("%px -t 1,2 x = 1 +")  # engines that fail alike: one traceback for both
    out = capsys.readouterr().out
    assert "[engines 1, 2] SyntaxError: " in out and "[engine 1]" not in out


def test_pxconfig_sets_the_defaults(
    ip: InteractiveShell, mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell("%pxconfig --quiet -t 1: --noblock")
    assert "targets=1:, block=False, --quiet" in capsys.readouterr().out
    pending = ip.run_cell("%px v = id").result
    assert isinstance(pending, multiengine.PendingResult)
    assert "Parallel execution" not in capsys.readouterr().out
    pending.get_result()
    ip.run_cell("%px --block v")  # the option beats the default
    assert out_lines(capsys.readouterr().out) == [f"Out[{i}:2]: {i}" for i in (1, 2, 3)]
    ip.run_cell("%pxconfig --verbose -t default --default-block")
    assert "targets=the client's, block=the client's, --verbose" in capsys.readouterr().out
    ip.run_cell("%px w = 1")
    assert "Parallel execution on engines: all" in capsys.readouterr().out


def test_pxresult_shows_the_last_result_again(
    ip: InteractiveShell, mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell("%pxresult")  # before any %px: the engines' last command (none yet)
    capsys.readouterr()
    ip.run_cell("%%px\nprint('p', id)\nid + 10")
    first = capsys.readouterr().out
    ip.run_cell("%pxresult")
    again = capsys.readouterr().out
    assert out_lines(again) == out_lines(first) == [f"Out[{i}:1]: {i + 10}" for i in range(4)]
    assert [line for line in again.splitlines() if line.startswith("[stdout:")] == [
        f"[stdout:{i}] p {i}" for i in range(4)
    ]  # shown again, in engine order
    pending = ip.run_cell("%px --noblock import time; time.sleep(0.1); id * 3").result
    assert isinstance(pending, multiengine.PendingResult)
    ip.run_cell("%pxresult")  # waits for it
    assert out_lines(capsys.readouterr().out) == [f"Out[{i}:2]: {i * 3}" for i in range(4)]
    ip.run_cell("%pxresult 1")
    assert out_lines(capsys.readouterr().out) == [f"Out[{i}:1]: {i + 10}" for i in range(4)]
    ip.run_cell("%px 1/0")
    capsys.readouterr()
    result = ip.run_cell("%pxresult")  # the last %px failed: its error again
    assert isinstance(result.error_in_exec, multiengine.CompositeError)
    assert "[engines 0, 1, 2, 3] ZeroDivisionError" in capsys.readouterr().out


def test_px_local_runs_here_too(
    ip: InteractiveShell, mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell("%%px --local\nimport math\nroot = math.sqrt(16)")
    assert ip.user_ns["root"] == 4.0
    assert mec.pull("root") == [4.0] * 4
    ip.user_ns.pop("never", None)
    ip.run_cell("%px --local never = 1/0")  # failed on the engines: not run here
    assert "never" not in ip.user_ns


def test_rich_values_in_a_frontend_and_at_a_terminal(
    ip: InteractiveShell, mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    mec.execute(RICH_PER_ENGINE)
    with capture_output() as shown:  # a frontend with every MIME type (Jupyter)
        ip.run_cell("%px -t 0,1 Rich()")
    bundles = [(o.data, o.metadata) for o in shown.outputs]
    assert bundles == [
        ({"text/plain": "Out[0:2]:"}, {"engine": 0}),
        ({"text/plain": "Rich(0)", "text/html": "<b>engine 0</b>"}, {"engine": 0}),
        ({"text/plain": "Out[1:2]:"}, {"engine": 1}),
        ({"text/plain": "Rich(1)", "text/html": "<b>engine 1</b>"}, {"engine": 1}),
    ]
    ip.display_formatter.active_types = ["text/plain"]  # as at IPython's terminal
    ip.run_cell("%px -t 0,1 Rich()")
    assert out_lines(capsys.readouterr().out) == ["Out[0:3]: Rich(0)", "Out[1:3]: Rich(1)"]


def test_outputs_of_ipython_engines_are_shown_per_engine(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ``outputs`` key (what an IPython engine displayed while the code ran)."""
    figure = {"data": {"text/plain": "<Figure>", "image/png": "iVBORw0KGgo="}, "metadata": {}}
    rows = [
        {"id": 0, "number": 4, "outputs": [figure], "display": {"pprint": "1", "repr": "1"}},
        {"id": 2, "number": 5, "outputs": [{"data": {"text/plain": "shown"}, "metadata": {}}]},
    ]
    with capture_output() as shown:
        magics_of(ip).show(rows)
    assert shown.stdout == "[output:0]\n[output:2]\n"
    assert [o.data for o in shown.outputs] == [
        figure["data"],
        {"text/plain": "Out[0:4]: 1"},
        {"text/plain": "shown"},
    ]


def test_help_through_magic_arguments(ip: InteractiveShell) -> None:
    px = ip.find_line_magic("px").__doc__ or ""
    for option in ("--targets", "--block", "--noblock", "--local", "::2"):
        assert option in px
    assert "--quiet" in (ip.find_line_magic("pxconfig").__doc__ or "")
    assert "number" in (ip.find_line_magic("pxresult").__doc__ or "")


@pytest.mark.timeout(180)
def test_the_seeds_parallel_pylab_example_runs(cluster: Cluster, tmp_path: Path) -> None:
    """examples/parallel_pylab.ipy: mec.activate() then %px, with no %load_ext."""
    pytest.importorskip("matplotlib")
    env = dict(
        os.environ,
        MULTIENGINE_EXAMPLE_CLUSTER_DIR=str(cluster.cluster_dir.path),
        MULTIENGINE_EXAMPLE_OUTPUT=str(tmp_path / "plot.png"),
    )
    ipython = [sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor"]
    out = subprocess.run(
        [*ipython, str(ROOT / "examples" / "parallel_pylab.ipy")],
        capture_output=True,
        text=True,
        env=env,
        timeout=150,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Error" not in out.stdout + out.stderr, out.stdout + out.stderr
    assert [line.split("]")[0] for line in out_lines(out.stdout)] == [
        f"Out[{i}:4" for i in range(4)
    ]
    assert "gathered 8000 points" in out.stdout
    assert (tmp_path / "plot.png").stat().st_size > 0
