"""Task replies an engine holds back, to send several in one ``replies`` message.

When the controller sends an engine many tiny tasks at once (``cmds``), answering each
with its own message costs the engine and the controller more than running it. So the
engine holds the reply of a task while more commands wait here to run, and sends what
it holds as one ``replies`` message:

* when nothing waits here any more (a lone task's reply is never held),
* when it holds :data:`HOLD_AT_MOST` replies (the controller then refills the engine
  while the rest of the batch runs, so the engine never waits for it),
* before a command that is not such a task, or that streams its output (the controller
  must know which command runs when the output comes),
* and, from a watcher thread, once the oldest reply has been held :data:`HOLD_FOR`
  seconds while a long task runs (a tiny task's answer does not wait for the slow one
  behind it).

Only small replies are held: a reply with out-of-band buffers goes at once (they may be
views of the user's arrays, which the next task may change). Replies keep their order
on the wire: holding, flushing and every other reply the main thread sends go under one
lock. A reply held when the controller was lost is dropped (the controller has failed
that command already), as an answer sent after the loss would be.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..wire import protocol as P
from ..wire.message import Signer
from ..wire.protocol import BatchedReply

__all__ = ["HOLD_AT_MOST", "HOLD_FOR", "HeldReplies"]

HOLD_AT_MOST = 16  # replies held before they go (half the controller's deepest prefetch)
HOLD_FOR = 0.002  # seconds a reply may wait behind a task that runs long


class HeldReplies:
    """The replies the engine holds, and the one way replies go out while it does.

    ``send(frames)`` sends on the command socket; ``epoch()`` is the engine's
    current epoch (a reply of an older session is not sent).
    """

    def __init__(
        self, signer: Signer, send: Callable[[list[Any]], None], epoch: Callable[[], int]
    ) -> None:
        self.lock = threading.Lock()
        self._signer = signer
        self._send = send
        self._epoch = epoch
        # (session, item, content, held since); the engine looks at it on every command
        self.items: list[tuple[int, BatchedReply, Any, float]] = []
        self._armed = threading.Event()
        self._watcher: threading.Thread | None = None

    def hold(self, session: int, item: BatchedReply, content: Any) -> None:
        """Keep a reply to send later; sends them all once there are HOLD_AT_MOST."""
        with self.lock:
            self.items.append((session, item, content, time.monotonic()))
            if len(self.items) >= HOLD_AT_MOST:
                self._flush_locked()

    def flush(self) -> None:
        """Send what is held, now."""
        if self.items:
            with self.lock:
                self._flush_locked()

    def send_after(self, frames: Callable[[], list[Any]]) -> None:
        """Send what is held, then another reply (``frames()`` signs it: after the held
        ones, whose signatures' stamps come first)."""
        with self.lock:
            self._flush_locked()
            self._send(frames())

    def drop(self) -> None:
        """Forget what is held (the controller was lost: it failed those commands)."""
        with self.lock:
            self.items.clear()

    def arm(self) -> None:
        """A command starts while replies are held: have them sent if it runs long."""
        if not self.items or self._armed.is_set():
            return
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch, name="multiengine-replies", daemon=True
            )
            self._watcher.start()
        self._armed.set()

    def _watch(self) -> None:
        while True:
            self._armed.wait()
            time.sleep(HOLD_FOR)
            with self.lock:
                self._armed.clear()
                held = self.items
                if held and time.monotonic() - held[0][3] >= HOLD_FOR:
                    self._flush_locked()

    def _flush_locked(self) -> None:
        held, self.items = self.items, []
        epoch = self._epoch()
        live = [(item, content) for session, item, content, _ in held if session == epoch]
        if not live:
            return
        if len(live) == 1:  # one reply: as it would have gone on its own
            item, content = live[0]
            header: dict[str, Any] = {
                "t": P.REPLY,
                "cmd": item.cmd,
                "status": item.status,
                "enc": item.enc,
                "elapsed": item.elapsed,
            }
            if item.task is not None:
                header["task"] = item.task
            self._send(self._signer.frames(header, content))
            return
        header = {"t": P.REPLIES, "replies": [item.to_wire() for item, _ in live]}
        frames = [content for _, content in live]
        self._send(self._signer.frames(header, b"", frames))
