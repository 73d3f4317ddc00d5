"""Where the controller listens: TCP on the given interface, and IPC for this host."""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

import zmq

from ..wire import stream

__all__ = ["bind"]

log = logging.getLogger("multiengine.controller")


def bind(
    sockets: dict[str, zmq.Socket[Any]],
    ip: str,
    ports: tuple[int, int, int] | None,
    ipc: dict[str, str] | None = None,
    before_ipc: Callable[[str, str], None] | None = None,
) -> tuple[list[int], dict[str, str]]:
    """Bind each socket to TCP (given or random ports) and, on loopback, to IPC too.

    Returns the TCP ports in order and the IPC URLs by channel name. Processes on this
    host may use IPC instead of loopback TCP: no TCP stack on the way, about 7% off a
    round trip (shared/spec/limits.md). ``ipc`` names the IPC URLs to bind again (a
    restored controller: engines and clients reconnect to where they were).
    ``before_ipc(name, url)`` is called just before a socket binds its IPC endpoint
    (the engine stream listens beside it first: an engine that finds the endpoint
    finds the stream too).
    """
    host = "*" if ip in ("0.0.0.0", "*") else ip
    if ":" in host:  # an IPv6 address
        host = f"[{host.strip('[]')}]"
        for s in sockets.values():
            s.setsockopt(zmq.IPV6, 1)
    bound = []
    for i, s in enumerate(sockets.values()):
        if ports:
            s.bind(f"tcp://{host}:{ports[i]}")
            bound.append(ports[i])
        else:
            bound.append(s.bind_to_random_port(f"tcp://{host}"))
    urls = _bind_ipc(sockets, ipc, before_ipc) if host in ("127.0.0.1", "*") else {}
    return bound, urls


def _bind_ipc(
    sockets: dict[str, zmq.Socket[Any]],
    again: dict[str, str] | None,
    before: Callable[[str, str], None] | None,
) -> dict[str, str]:
    """Bind each socket to an IPC endpoint in a private runtime directory too (the
    endpoints ``again`` names, if given and in that directory)."""
    base = os.path.join(tempfile.gettempdir(), f"multiengine-{os.getuid()}")
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        os.chmod(base, 0o700)
    except OSError as e:
        log.info("no IPC endpoints (%s): local processes use TCP", e)
        return {}
    for stale in os.listdir(base):  # endpoints of controllers that died without cleaning up
        path = os.path.join(base, stale)
        if not stream.listening(path):
            try:
                os.unlink(path)
            except OSError:
                pass
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    urls = {}
    for name, sock in sockets.items():
        url = f"ipc://{base}/{tag}-{name[0]}"
        old = (again or {}).get(name, "")
        if old.startswith(f"ipc://{base}/") and not stream.listening(old[len("ipc://") :]):
            url = old
        if before is not None:
            before(name, url)
        try:
            sock.bind(url)
        except zmq.ZMQError as e:
            log.info("no IPC endpoint for %s (%s): local processes use TCP", name, e)
            return {}
        urls[name] = url
    return urls
