"""The control socket of a running cluster: how another shell reaches the process that
supervises it.

The process that started a cluster (``multiengine cluster start``, or a
:class:`~multiengine.cluster.cluster.Cluster` in a Python program) listens on a Unix
socket in the cluster directory, ``security/control.sock``: mode 0600 in the 0700
``security/`` directory, and only processes of the same user are answered (checked
again with ``SO_PEERCRED``). ``multiengine cluster engines add|stop|restart`` and
``Cluster.from_profile`` send it one request, a JSON object on one line, and read one
answer line::

    {"op": "add", "n": 2}                 ->  {"ok": true, "ids": [4, 5]}
    {"op": "restart", "ids": [7]}         ->  {"ok": false, "kind": "InvalidEngineID",
                                               "error": "unknown engine id 7: ..."}

Ops: ``info``, ``add`` (``n``, ``wait``), ``stop`` and ``restart`` (``ids``),
``stop_cluster``. Nothing in a request is executed or unpickled: it names engines and
counts. The socket exists while the cluster runs; connecting to a missing or stale one
is :class:`~multiengine.errors.ClusterNotRunning`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import errors
from ..runtime import ClusterDir

__all__ = ["ControlServer", "request", "socket_path"]

log = logging.getLogger("multiengine.cluster")

MAX_REQUEST = 1 << 16  # bytes: a request names a few engines, never more
_UNIX_PATH_MAX = 100  # sun_path holds 108 bytes on Linux; longer paths go through /proc

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def socket_path(cdir: ClusterDir) -> Path:
    return cdir.security / "control.sock"


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """``path`` as a Unix socket address; a long one through ``/proc/self/fd`` (Linux),
    since a socket address holds at most 108 bytes."""
    if len(os.fsencode(path)) < _UNIX_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class ControlServer:
    """Answers control requests with ``handle`` (one thread per connection)."""

    def __init__(self, path: Path, handle: Handler) -> None:
        self.path = path
        self.handle = handle
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._inode: int | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # a stale one (a killed start), or an older cluster's
            with _address(self.path) as address:
                old = os.umask(0o177)
                try:
                    sock.bind(address)
                finally:
                    os.umask(old)
            os.chmod(self.path, 0o600)
            sock.listen(16)
            sock.settimeout(0.2)
        except BaseException:
            sock.close()
            raise
        self._inode = self.path.stat().st_ino
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="multiengine-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:  # ours, not a newer cluster's
                self.path.unlink()

    def _wake(self) -> None:
        """Connect once, so that the accept() returns now rather than at its timeout
        (0.2 s; shutting down a listening Unix socket does not wake it)."""
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.settimeout(0.5)
            with _address(self.path) as address:
                s.connect(address)

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if not self._stop.is_set():
                    log.exception("control socket %s", self.path)
                return
            if self._stop.is_set():  # (the wake-up of close())
                conn.close()
                return
            threading.Thread(
                target=self._answer, args=(conn,), name="multiengine-control-request", daemon=True
            ).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                if not _same_user(conn):
                    return
                line = _read_line(conn)
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise ValueError("a control request is a JSON object")
                conn.settimeout(None)
                try:
                    answer = {"ok": True, **self.handle(req)}
                except (errors.KernelError, ValueError, TypeError, KeyError, OSError) as e:
                    answer = {"ok": False, "kind": type(e).__name__, "error": str(e)}
                conn.sendall(json.dumps(answer).encode() + b"\n")
            except (OSError, ValueError) as e:
                log.warning("control request dropped: %s", e)


def _same_user(conn: socket.socket) -> bool:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return True  # no SO_PEERCRED here: the 0700 directory is the only check
    _, uid, _ = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        piece = conn.recv(4096)
        if not piece:
            break
        data += piece
        if len(data) > MAX_REQUEST:
            raise ValueError("control message too long")
    return data


_ERRORS: dict[str, type[Exception]] = {
    "ClusterNotRunning": errors.ClusterNotRunning,
    "InvalidEngineID": errors.InvalidEngineID,
    "ClusterStartError": errors.ClusterStartError,
    "LaunchError": errors.LaunchError,
    "ControllerConnectionError": errors.ControllerConnectionError,
    "ValueError": ValueError,
    "TypeError": TypeError,
}


def request(cdir: ClusterDir, req: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Send one control request to the process supervising ``cdir``'s cluster; its answer.

    Raises :class:`~multiengine.errors.ClusterNotRunning` when no process listens, and
    the error the supervisor reported (``InvalidEngineID``, ``ValueError``, ...) when the
    request failed.
    """
    path = socket_path(cdir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    with sock:
        try:
            with _address(path) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            raise errors.ClusterNotRunning(
                f"no cluster is running for profile {cdir.profile!r} (nothing answers at {path})"
            ) from None
        sock.sendall(json.dumps(req).encode() + b"\n")
        try:
            line = _read_line(sock)
        except TimeoutError:
            raise errors.ClusterNotRunning(
                f"the process supervising cluster {cdir.profile!r} did not answer "
                f"within {timeout:g} s"
            ) from None
    if not line:
        raise errors.ClusterNotRunning(
            f"the process supervising cluster {cdir.profile!r} closed the connection "
            "without an answer (is it stopping?)"
        )
    answer = json.loads(line)
    if not answer.get("ok"):
        cls = _ERRORS.get(str(answer.get("kind")), errors.KernelError)
        raise cls(str(answer.get("error", "the request failed")))
    return answer  # type: ignore[no-any-return]
