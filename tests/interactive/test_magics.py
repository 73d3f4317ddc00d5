"""The IPython magics, driven through a real InteractiveShell against real engines."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
from helpers import Latch, idle, wait_until

import multiengine
from multiengine.cluster.cluster import Cluster

IPython = pytest.importorskip(
    "IPython", reason="the magics need IPython (pip install multiengine[ipython])"
)
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

from multiengine.magics import NO_CLIENT  # noqa: E402


@pytest.fixture
def ip(mec: multiengine.MultiEngineClient) -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "multiengine")
    magics = shell.magics_manager.registry["ParallelMagics"]
    magics.client = None
    magics.targets, magics.block, magics.verbose, magics._last = None, None, True, None
    yield shell
    if magics._original_run_cell is not None:
        magics._disable_autopx()
    magics.client = None
    magics.targets, magics.block, magics.verbose, magics._last = None, None, True, None


def test_no_active_client(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    assert ip.run_cell("%px a = 1").result is None
    assert NO_CLIENT in capsys.readouterr().out


def test_px_runs_on_the_engines(
    ip: InteractiveShell, mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    mec.activate()
    mec.push(dict(c="speed"))
    assert ip.run_cell("%px print(c)").result is None  # seed §F 12: shown, not returned
    out = capsys.readouterr().out
    assert "Parallel execution on engines: all" in out
    for i in range(4):  # the live output, once, and no echo of the code
        assert out.count(f"[stdout:{i}] speed\n") == 1
    assert "In [" not in out and "<Results List>" not in out
    rows = ip.run_cell("%result").result  # the result dicts are still there
    assert isinstance(rows, multiengine.ResultList)
    assert [r["stdout"] for r in rows] == ["speed\n"] * 4
    assert "c" not in ip.user_ns  # it ran there, not here


def test_cell_magic_and_options(
    ip: InteractiveShell, mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    mec.activate()
    ip.run_cell("%%px -t 1,3\nx = id * 10\nprint(x)")
    out = capsys.readouterr().out
    assert "Parallel execution on engines: [1, 3]" in out
    assert "[stdout:1] 10\n" in out and "[stdout:3] 30\n" in out and "[stdout:0]" not in out
    assert [(r["id"], r["stdout"]) for r in mec.get_result(targets=[1, 3])] == [
        (1, "10\n"),
        (3, "30\n"),
    ]
    pending = ip.run_cell("%px --noblock y = 2").result
    assert isinstance(pending, multiengine.PendingResult)
    assert len(pending.r) == 4
    assert mec.pull("y") == [2] * 4


def test_result_magic(ip: InteractiveShell, mec: multiengine.MultiEngineClient) -> None:
    mec.activate()
    mec.execute("a = 10")  # In [1]
    mec.execute("b = 20")  # In [2]
    last = ip.run_cell("%result").result
    assert [r["input"]["raw"] for r in last] == ["b = 20"] * 4
    first = ip.run_cell("%result 1").result
    assert [(r["id"], r["number"], r["input"]["raw"]) for r in first] == [
        (i, 1, "a = 10") for i in range(4)
    ]


def test_autopx_toggles_and_runs_cells_remotely(
    ip: InteractiveShell, mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    mec.activate()
    ip.run_cell("%autopx")
    assert "%autopx enabled" in capsys.readouterr().out
    ip.run_cell("z = id + 100\nprint(z)")
    out = capsys.readouterr().out
    assert "<Results List>" in out and "Out[1]: 103" in out
    bad = ip.run_cell("1 +")  # a syntax error is shown locally and sent nowhere
    assert isinstance(bad.error_in_exec, SyntaxError)
    assert mec.execute("w = 1")[0]["number"] == 2  # the engines' counters did not move for it
    ip.run_cell("%autopx")
    assert "%autopx disabled" in capsys.readouterr().out
    assert mec.pull("z") == [100, 101, 102, 103]
    ip.run_cell("local_only = 5")
    assert ip.user_ns["local_only"] == 5  # back to running here


def test_ctrl_c_during_px_interrupts_the_engines(
    ip: InteractiveShell,
    mec: multiengine.MultiEngineClient,
    cluster: Cluster,
    latch: Callable[[], Latch],
) -> None:
    mec.activate()
    main = threading.main_thread().ident
    assert main is not None
    started = [latch() for _ in range(4)]
    paths = [str(s.path) for s in started]

    def ctrl_c() -> None:  # once every engine runs the command (or on a timeout: unblock)
        try:
            wait_until(lambda: all(s.is_set() for s in started), message="the engines to start")
        finally:
            signal.pthread_kill(main, signal.SIGINT)

    sender = threading.Thread(target=ctrl_c, daemon=True)
    sender.start()
    # each engine says it has started, then sleeps far longer than any wait here
    ip.run_cell(f"%px open({paths!r}[id], 'a').close(); import time; time.sleep(600)")
    sender.join()
    assert all(s.is_set() for s in started)
    # the engines stopped: only the interrupt can have ended their sleep
    wait_until(lambda: idle(mec), message="the engines to stop running the command")
    assert mec.queue_status() == [(i, {"queue": [], "pending": None}) for i in range(4)]
    assert mec.pull("id") == [0, 1, 2, 3]


def test_activate_outside_ipython(cluster: Cluster) -> None:
    code = (
        "import multiengine\n"
        f"mec = multiengine.MultiEngineClient(cluster_dir={str(cluster.cluster_dir.path)!r})\n"
        "mec.activate()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "only work within IPython" in out.stdout


def test_doc_examples_with_px(ip: InteractiveShell, mec: multiengine.MultiEngineClient) -> None:
    """seed-tests §F 14, 16, 17 and 19, with %px where the docs used it."""
    mec.activate()
    mec.live_output = False

    def f(x: float) -> float:
        return 2.0 * x**4

    mec.push_function(dict(f=f))  # §F 14
    mec.execute("y = f(4.0)")
    ip.run_cell("%px print(y)")
    assert [r["stdout"] for r in ip.run_cell("%result").result] == ["512.0\n"] * 4
    mec.scatter("a", range(16))  # §F 16
    ip.run_cell("%px print(a)")
    rows = ip.run_cell("%result").result
    assert [r["stdout"] for r in rows] == [f"{list(range(4 * i, 4 * i + 4))}\n" for i in range(4)]
    mec.scatter("x", range(64))  # §F 17
    ip.run_cell("%px y = [i**10 for i in x]")
    assert mec.gather("y") == [i**10 for i in range(64)]
    ip.run_cell("%px import numpy")  # §F 19
    ip.run_cell("%px a = numpy.random.rand(2,2)")
    ip.run_cell("%px max_evals = [max(abs(numpy.linalg.eigvals(a)))]")
    ip.run_cell('%px print("Average max eigenvalue is: ", sum(max_evals)/len(max_evals))')
    rows = ip.run_cell("%result").result
    assert all(r["stdout"].startswith("Average max eigenvalue is: ") for r in rows)


def test_result_docstring_example(
    ip: InteractiveShell, mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """seed-tests §F 25: %px a = 5 prints the targets line; %result N gives that command's rows."""
    mec.activate()
    mec.targets = [0, 1]
    try:
        for _ in range(5):
            mec.execute("pass")
        ip.run_cell("%px a = 5")
        assert "Parallel execution on engines: [0, 1]" in capsys.readouterr().out
        rows = ip.run_cell("%result").result
        assert [(r["id"], r["number"]) for r in rows] == [(0, 6), (1, 6)]
        again = ip.run_cell("%result 6").result
        assert repr(again).splitlines() == [
            "<Results List>",
            "[0] In [6]: a = 5",
            "[1] In [6]: a = 5",
        ]
        assert repr(ip.run_cell("%result").result) == repr(again)
    finally:
        mec.targets = "all"


def test_activate_loads_the_magics_itself(cluster: Cluster) -> None:
    """Inside IPython, mec.activate() alone makes %px work (no %load_ext first)."""
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "import multiengine\n"
        "ip = InteractiveShell.instance()\n"
        f"mec = multiengine.MultiEngineClient(cluster_dir={str(cluster.cluster_dir.path)!r})\n"
        "mec.activate()\n"
        "ip.run_cell('%px -t 0 40 + 2')\n"
        "ip.run_line_magic('load_ext', 'multiengine')\n"  # later: nothing more to load
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Out[0:" in out.stdout and "]: 42" in out.stdout
    assert "You must first load" not in out.stdout and "already loaded" in out.stdout
