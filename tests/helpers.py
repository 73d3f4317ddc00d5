"""What the tests share besides fixtures: waiting on observable state, the command line,
processes, latches between a test and code on the engines, and common assertions.

Tests wait for what they need to see (:func:`wait_until`, :func:`call_within`,
:class:`Latch`), never for a guessed time: the deadlines here only guard against a hang,
and a test that hits one fails naming what it was waiting for.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import multiengine
from multiengine.errors import CompositeError

T = TypeVar("T")

#: how long a guard waits before calling something hung (generous: the machine is shared)
HANG = 30.0

#: the engine ids of the shared cluster (the ``mec`` fixture checks that it has them all)
ENGINES = [0, 1, 2, 3]

# A class whose values have a text and an HTML repr that name the engine they were made on.
RICH_PER_ENGINE = """
class Rich:
    def __repr__(self):
        return f"Rich({id})"
    def _repr_html_(self):
        return f"<b>engine {id}</b>"
"""


# ---------------------------------------------------------------- waiting
def wait_until(
    predicate: Callable[[], T],
    timeout: float = HANG,
    interval: float = 0.02,
    message: str | Callable[[], str] = "the condition",
) -> T:
    """Poll ``predicate`` until it returns something true, and return that.

    Raises AssertionError naming ``message`` (what was awaited; a callable is asked for it
    then, to describe the state at that moment) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            what = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def call_within(fn: Callable[[], T], timeout: float = HANG, message: str = "the call") -> T:
    """``fn()`` run on a daemon thread: its value, or its exception raised here.

    Raises AssertionError if it has not returned after ``timeout`` seconds: a guard
    against a hang, for calls that block with no timeout of their own.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed back to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError(f"{message} did not return within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


# ---------------------------------------------------------------- latches
def wait_for_path(path: str) -> None:
    """Block until ``path`` exists: what a function sent to the engines calls to wait on a
    :class:`Latch` (``wait_for_path(str(latch.path))``)."""
    while not os.path.exists(path):
        time.sleep(0.01)


class Latch:
    """A one-way switch, through a file, between a test and code on the engines.

    Engine code :attr:`wait_code` returns only once the latch is set; the test sets it
    with :meth:`set`. Engine code :attr:`set_code` sets it from the engines; the test
    waits for that with :meth:`wait`. Neither piece of code binds a name in the engine's
    namespace. A latch keeps an engine busy exactly until the test has seen what it wants
    to see, or tells the test that remote code has really started: never a sleep.

    Take latches from the ``latch`` fixture, which sets them all when the test ends so
    that no engine stays blocked.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def wait_code(self) -> str:
        return (
            f"while not __import__('os').path.exists({str(self.path)!r}): "
            "__import__('time').sleep(0.01)"
        )

    @property
    def set_code(self) -> str:
        return f"open({str(self.path)!r}, 'a').close()"

    def set(self) -> None:
        self.path.touch()

    def is_set(self) -> bool:
        return self.path.exists()

    def wait(self, timeout: float = HANG, message: str | None = None) -> None:
        wait_until(self.is_set, timeout, message=message or f"latch {self.path.name} to be set")


# ---------------------------------------------------------------- the command line
def run_cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m multiengine ARGS`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "multiengine", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


# ---------------------------------------------------------------- processes
@contextlib.contextmanager
def engine_group_from_stdin(
    cluster: multiengine.Cluster, n: int = 2, extra: tuple[str, ...] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """``multiengine engine --connection-file - -n N`` given the cluster's engine connection
    file on stdin (what the ssh launcher runs on a host); killed afterwards if it still runs."""
    group = subprocess.Popen(
        [sys.executable, "-m", "multiengine", "engine", "--connection-file", "-", "-n", str(n)]
        + list(extra),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert group.stdin is not None
    try:
        info = json.loads(cluster.cluster_dir.engine_file.read_text())
        group.stdin.write((json.dumps(info) + "\n").encode())  # one line
        group.stdin.flush()
        yield group
    finally:
        if group.poll() is None:
            group.kill()
            group.wait()


@contextlib.contextmanager
def client_process(code: str, cluster_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A client in a process of its own running ``code`` (``sys.argv[1]`` is the
    cluster's folder), given once it has printed its first line; killed and reaped on
    the way out if it still runs."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), str(cluster_dir)],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip(), "the client process ended before its first line"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def process_running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def running(pids: Iterable[int]) -> list[int]:
    """The ones of ``pids`` still running."""
    return [p for p in pids if process_running(p)]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def processes_using(directory: Path) -> dict[int, str]:
    """Running processes (not this one) whose command line names ``directory`` or a path
    under it, or that are multiengine processes started with ``MULTIENGINE_DIR`` set to it:
    ``{pid: command line}``."""
    d = str(directory)
    env_entry = f"MULTIENGINE_DIR={d}".encode()
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        args = [a.decode(errors="replace") for a in _read(f"/proc/{entry}/cmdline").split(b"\0")]
        cmdline = " ".join(a for a in args if a)
        named = any(f"{d}/" in f"{a}/" for a in args if a)
        ours = (
            not named
            and "multiengine" in cmdline
            and env_entry in _read(f"/proc/{entry}/environ").split(b"\0")
        )
        if (named or ours) and process_running(int(entry)):
            found[int(entry)] = cmdline
    return found


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Start ``fn`` on a thread: the thread, and a list that gets what ``fn`` returned or
    the exception it raised (handed to the test's thread) once it ends."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as e:  # handed to the test's thread
            out.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, out


def outcome_with_engine_killed(
    call: Callable[[], Any],
    watcher: multiengine.MultiEngineClient,
    engine_id: int,
    pid: int,
    running: str,
) -> Any:
    """Run ``call`` on a thread and SIGKILL engine ``engine_id`` (process ``pid``) as soon
    as ``watcher`` shows it running a command whose description starts with ``running``
    (at once if the call has already ended): what the call returned, or the exception it
    raised."""
    caller, outcome = in_thread(call)

    def answering() -> bool:
        engines = watcher.status()["engines"]
        return any(e["id"] == engine_id and str(e["running"]).startswith(running) for e in engines)

    try:
        wait_until(
            lambda: answering() or bool(outcome), HANG, 0.001, f"engine {engine_id} to answer"
        )
        os.kill(pid, signal.SIGKILL)
    finally:
        caller.join(HANG)
    (result,) = outcome
    return result


def kill_pids(pids: Iterable[int]) -> None:
    """SIGKILL each of ``pids`` that still exists."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- clients and results
def assert_remote(
    exc_type: type[BaseException], func: Callable[..., Any], *args: Any, **kwargs: Any
) -> CompositeError:
    """``func(*args, **kwargs)`` fails with a CompositeError whose every engine error is an
    ``exc_type``, and ``raise_exception()`` re-raises that type (the seed's ``_raise_it``)."""
    with pytest.raises(CompositeError) as excinfo:
        func(*args, **kwargs)
    e = excinfo.value
    assert e.elist, "a CompositeError without errors"
    for et, ev, _ in e.elist:
        assert isinstance(ev, exc_type), f"expected {exc_type.__name__}, got {et.__name__}: {ev}"
    with pytest.raises(exc_type):
        e.raise_exception()
    return e


def error_types(e: CompositeError) -> list[type]:
    """The exception type of each engine's error in ``e``, in order."""
    return [et for et, _, _ in e.elist]


def pending(x: Any) -> multiengine.PendingResult:
    """``x`` is what a non-blocking call returns: a PendingResult with a result id."""
    assert isinstance(x, multiengine.PendingResult)
    assert isinstance(x.result_id, str) and x.result_id
    return x


def assert_cluster_works(mec: multiengine.MultiEngineClient, targets: Any = "all") -> None:
    """A follow-up execute and pull succeed on ``targets``."""
    mec.execute("_follow_up = 41 + 1", targets=targets)
    values = mec.pull("_follow_up", targets=targets)
    assert values and all(v == 42 for v in values), values


def assert_engines_work(mec: multiengine.MultiEngineClient, n: int) -> None:
    """Engines 0 .. n-1 are there and each runs code as itself."""
    mec.execute("probe = id * 10")
    assert mec.pull("probe") == [10 * i for i in range(n)]


def idle(mec: multiengine.MultiEngineClient, targets: Any = "all") -> bool:
    """Nothing runs and nothing waits on ``targets`` (as the controller sees it)."""
    return all(q == {"queue": [], "pending": None} for _, q in mec.queue_status(targets=targets))


def plain_repr(obj: object) -> str:
    """repr() as shown when stdout is not a terminal (no colours)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return repr(obj)


def clean_properties(mec: multiengine.MultiEngineClient) -> None:
    """Start from no engine properties, as the seed's fresh engines did.

    The ``mec`` fixture's reset() should already have cleared them (a test of reset checks
    that); clearing here keeps a failure of reset from spilling into the property tests.
    """
    with pytest.warns(DeprecationWarning):
        mec.clear_properties()


# ---------------------------------------------------------------- tasks
def finish(tc: multiengine.TaskClient, tids: int | list[int], timeout: float = HANG) -> None:
    """Wait until every task of ``tids`` has finished (succeeded or failed), polling
    ``queue_status`` so that a task that never ends fails the test instead of hanging it."""
    ids = [tids] if isinstance(tids, int) else list(tids)

    def done() -> bool:
        st = tc.queue_status(True)
        return set(ids) <= set(st["succeeded"]) | set(st["failed"])

    wait_until(done, timeout, message=f"tasks {ids} to finish")


def running_engine(mec: multiengine.MultiEngineClient) -> int:
    """The id of the one engine that is running something now (waiting until there is one)."""
    busy: list[int] = []

    def found() -> bool:
        busy[:] = [eid for eid, q in mec.queue_status() if q["pending"] is not None]
        return len(busy) == 1

    wait_until(found, message="exactly one busy engine")
    return busy[0]
