"""A wire tap: a man in the middle on one channel that forwards everything both ways and
records what passes, so a test can capture real signed messages and replay them, or
change them on their way (:attr:`Tap.alter`).

Peers connect to :attr:`Tap.url` instead of the controller's address. For each peer
socket the tap opens a DEALER with the same routing identity to the controller, so the
controller routes its answers to that peer exactly as without the tap: when the peer
first sends, or, for a client's receiving sockets, which never send, when a message
names it as its ``rt`` (the client asks again until its ``connect`` is answered).
:func:`tapped_connection` writes a connection file whose addresses lead to taps.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import zmq

from multiengine.wire.message import DELIM

__all__ = ["Captured", "Tap", "header_of", "tapped_connection"]

UP, DOWN = "up", "down"  # towards the controller, from it


class Captured:
    """One message that passed the tap: its direction, the peer's identity, its frames."""

    __slots__ = ("direction", "peer", "frames")

    def __init__(self, direction: str, peer: bytes, frames: list[bytes]) -> None:
        self.direction = direction
        self.peer = peer
        self.frames = frames

    @property
    def header(self) -> dict[str, Any]:
        return header_of(self.frames)


def _reply_to(frames: list[bytes]) -> bytes | None:
    try:
        rt = header_of(frames).get("rt")
    except Exception:  # not a message of ours: forwarded all the same
        return None
    return rt if isinstance(rt, bytes) else None


def header_of(frames: list[bytes]) -> dict[str, Any]:
    first = next(f for f in frames if f.startswith(DELIM))
    header: dict[str, Any] = msgpack.unpackb(first[len(DELIM) + 32 :])
    return header


class Tap:
    """Forwards one channel between its peers and the controller's ``upstream`` address."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.front = self.ctx.socket(zmq.ROUTER)
        self.front.setsockopt(zmq.LINGER, 0)
        port = self.front.bind_to_random_port("tcp://127.0.0.1")
        self.url = f"tcp://127.0.0.1:{port}"
        self.seen: list[Captured] = []
        # a man in the middle who changes what he forwards: the frames of a message on
        # its way up become what this returns (set it from the test's thread)
        self.alter: Callable[[list[bytes]], list[bytes]] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wiretap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        backs: dict[bytes, zmq.Socket[Any]] = {}
        peer_of: dict[zmq.Socket[Any], bytes] = {}
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(50):
                    if sock is self.front:
                        peer, *frames = self.front.recv_multipart()
                        rt = _reply_to(frames)
                        for who in (peer, rt):
                            if who is not None and who not in backs:
                                back = self.ctx.socket(zmq.DEALER)
                                back.setsockopt(zmq.LINGER, 0)
                                if not who.startswith(b"\0"):  # identities zmq made
                                    back.setsockopt(zmq.IDENTITY, who)
                                back.connect(self.upstream)
                                backs[who] = back
                                peer_of[back] = who
                                poller.register(back, zmq.POLLIN)
                        if self.alter is not None:
                            frames = self.alter(frames)
                        self.seen.append(Captured(UP, peer, frames))
                        backs[peer].send_multipart(frames)
                    else:
                        frames = sock.recv_multipart()
                        peer = peer_of[sock]
                        self.seen.append(Captured(DOWN, peer, frames))
                        self.front.send_multipart([peer, *frames])
        finally:
            for back in backs.values():
                back.close(0)
            self.front.close(0)

    def find(self, direction: str, type_: str) -> list[Captured]:
        """What passed in ``direction`` with message type ``type_``, in order."""
        return [
            c for c in list(self.seen) if c.direction == direction and c.header.get("t") == type_
        ]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.ctx.term()


def tapped_connection(source: Path, dest: Path, channels: Iterable[str]) -> dict[str, Tap]:
    """Write ``dest``: the connection file ``source`` with ``channels`` led through taps."""
    info = json.loads(source.read_text())
    info.pop("ipc_addresses", None)  # TCP only, so the taps are on the way
    taps = {ch: Tap(info["addresses"][ch]) for ch in channels}
    for ch, tap in taps.items():
        info["addresses"][ch] = tap.url
    dest.write_text(json.dumps(info))
    dest.chmod(0o600)
    return taps


@contextmanager
def tapped_client(client_file: Path, tmp_path: Path) -> Iterator[tuple[Tap, Any]]:
    """A MultiEngineClient whose traffic to the controller (of ``client_file``) passes a
    tap, and the tap; both closed on the way out."""
    import multiengine

    taps = tapped_connection(client_file, tmp_path / "tapped-client.json", ["client"])
    mec = multiengine.MultiEngineClient(connection_file=tmp_path / "tapped-client.json")
    try:
        yield taps["client"], mec
    finally:
        mec.close()
        taps["client"].close()
