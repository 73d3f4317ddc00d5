"""Capturing what user code prints, and sending it on while the code still runs.

Each command's ``sys.stdout``/``sys.stderr`` is a :class:`Capture`: everything written
is kept for the result dict (``stdout``/``stderr``), and, when the client asked for
live output, also handed to the :class:`Streamer`, whose thread sends it to the
controller in small batches (a line is sent within about 10 ms; a loop printing
thousands of lines sends a few messages, not thousands).

``execute`` captures in the interpreter; the commands that call a user function
(``apply``, ``map``, ``task``) capture with :class:`Captured`. What user code logs goes
to the capture too: :class:`UserLogHandler`, on the root logger of an engine, writes the
records of WARNING and above that user code (the main thread, not multiengine's own
loggers) emits while a command runs to that command's stderr, as Python's
``logging.basicConfig()`` would print them.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["Capture", "Captured", "Streamer", "UserLogHandler"]

COALESCE = 0.01  # seconds to gather more output before sending
MAX_PENDING = 64 * 1024  # send at once past this many characters


class Streamer:
    """Sends captured output through ``send(name, text)`` from its own thread."""

    def __init__(self, send: Callable[[str, str], None]) -> None:
        self._send = send
        self._cond = threading.Condition()
        self._delivering = threading.Lock()
        self._pending: list[tuple[str, str]] = []
        self._size = 0
        self._thread = threading.Thread(target=self._run, name="multiengine-output", daemon=True)
        self._thread.start()

    def put(self, name: str, text: str) -> None:
        with self._cond:
            self._pending.append((name, text))
            self._size += len(text)
            if "\n" in text or self._size >= MAX_PENDING:
                self._cond.notify()

    def flush(self) -> None:
        """Send whatever is pending now, on the caller's thread (before a reply).

        One delivery at a time: output taken by the thread is sent before a flush
        returns, so nothing printed arrives after the command's reply.
        """
        with self._delivering:
            with self._cond:
                pending, self._pending, self._size = self._pending, [], 0
            self._deliver(pending)

    def _deliver(self, pending: list[tuple[str, str]]) -> None:
        merged: list[tuple[str, str]] = []
        for name, text in pending:  # consecutive writes to one stream go as one message
            if merged and merged[-1][0] == name:
                merged[-1] = (name, merged[-1][1] + text)
            else:
                merged.append((name, text))
        for name, text in merged:
            self._send(name, text)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
            threading.Event().wait(COALESCE)
            self.flush()


class Capture(io.TextIOBase):
    """A text stream that keeps everything written and passes it to a streamer."""

    # (slots: no instance dict is made for the two of every command; io.TextIOBase
    # still takes other attributes in one of its own)
    __slots__ = ("name", "_parts", "_streamer")

    def __init__(self, name: str, streamer: Streamer | None = None) -> None:
        # (no super().__init__(): io.TextIOBase's is object's; two of these are made
        # for every command)
        self.name = name
        self._parts: list[str] = []
        self._streamer = streamer

    def writable(self) -> bool:
        return True

    def write(self, s: Any) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if s:
            self._parts.append(s)
            if self._streamer is not None:
                self._streamer.put(self.name, s)
        return len(s)

    def getvalue(self) -> str:
        return "".join(self._parts)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class Captured:
    """``with Captured(streamer) as (out, err):`` user code's stdout and stderr, captured."""

    __slots__ = ("out", "err", "_saved")

    def __init__(self, streamer: Streamer | None) -> None:
        self.out = Capture("stdout", streamer)
        self.err = Capture("stderr", streamer)
        self._saved: tuple[Any, Any] = (None, None)

    def __enter__(self) -> tuple[Capture, Capture]:
        self._saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self.out, self.err
        return self.out, self.err

    def __exit__(
        self,
        et: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sys.stdout, sys.stderr = self._saved
        streamer = self.out._streamer
        if streamer is not None:
            streamer.flush()  # all of it is out before the reply

    def keep(self, msg: dict[str, Any]) -> None:
        """Put what was written into a command's result (``stdout``, ``stderr``: only
        those written to)."""
        if self.out._parts:
            msg["stdout"] = self.out.getvalue()
        if self.err._parts:
            msg["stderr"] = self.err.getvalue()

    def texts(self) -> tuple[str, str] | None:
        """(stdout, stderr), or None when nothing was written."""
        if not self.out._parts and not self.err._parts:
            return None
        return self.out.getvalue(), self.err.getvalue()


class UserLogHandler(logging.Handler):
    """Log records of user code, to the stderr of the command that runs it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
        self._main = threading.main_thread().ident

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr
        if not isinstance(stream, Capture) or record.thread != self._main:
            return  # between commands, or another thread: the engine's log has it
        if record.name == "multiengine" or record.name.startswith("multiengine."):
            return
        try:
            stream.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging never fails the user's code
            self.handleError(record)

    @classmethod
    def install(cls) -> None:
        """Put one on the root logger (once per process)."""
        root = logging.getLogger()
        if not any(isinstance(h, cls) for h in root.handlers):
            root.addHandler(cls())
