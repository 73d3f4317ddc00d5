"""CurveZMQ: encryption of every connection when the controller listens off loopback.

The controller holds a long-lived server key pair (``security/curve.json``, mode 0600)
and publishes the public half as ``curve_serverkey`` in the connection files. Engines
and clients make a fresh client key pair per process: Curve encrypts the traffic and
proves the server's identity to them; who may *send* work is still decided by the
HMAC key, so a peer without it is heard but never obeyed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import zmq

__all__ = ["is_loopback", "server_keypair", "make_server", "make_client", "available"]


def available() -> bool:
    return bool(zmq.has("curve"))


def is_loopback(ip: str) -> bool:
    """True for addresses no other host can reach (then encryption adds nothing)."""
    return ip in ("localhost", "::1") or ip.startswith("127.")


def server_keypair(path: Path, reuse: bool = False) -> tuple[bytes, bytes]:
    """The controller's (public, secret) keys: read from ``path`` with ``reuse``, else new."""
    if reuse and path.exists():
        data = json.loads(path.read_text())
        return data["public"].encode(), data["secret"].encode()
    public, secret = zmq.curve_keypair()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump({"public": public.decode(), "secret": secret.decode()}, f)
    return public, secret


def make_server(sock: zmq.Socket[Any], secret: bytes) -> None:
    """Before binding: only Curve clients that know our public key get through."""
    sock.curve_secretkey = secret
    sock.curve_server = True


def make_client(sock: zmq.Socket[Any], serverkey: str | bytes | None) -> None:
    """Before connecting: encrypt to the controller whose public key is ``serverkey``."""
    if not serverkey:
        return
    if not available():
        from ..errors import KernelError

        raise KernelError(
            "the controller requires CurveZMQ encryption but this pyzmq/libzmq has no Curve support"
        )
    public, secret = zmq.curve_keypair()
    sock.curve_serverkey = serverkey.encode() if isinstance(serverkey, str) else serverkey
    sock.curve_publickey = public
    sock.curve_secretkey = secret
