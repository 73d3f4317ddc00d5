"""Connection files: where the controller listens and the key that signs messages.

A connection file is a JSON object::

    {"key": "<hex>", "signature_scheme": "hmac-sha256",
     "addresses": {"client": "tcp://127.0.0.1:50123", ...},
     "curve_serverkey": null, "controller_pid": 1234, "location": "127.0.0.1"}

Clients get ``security/client.json`` (channel ``client``), engines
``security/engine.json`` (channels ``engine`` and ``heartbeat``). Files are written to a
temporary name in the same directory, made mode 0600 and renamed, so a reader never
sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConnectionFileError

__all__ = ["ConnectionInfo", "read_connection_file", "write_connection_file", "ENV_VAR"]

ENV_VAR = "MULTIENGINE_CONNECTION"


@dataclass(frozen=True)
class ConnectionInfo:
    key: bytes
    addresses: dict[str, str]
    signature_scheme: str = "hmac-sha256"
    curve_serverkey: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def url(self, channel: str) -> str:
        """Where to reach ``channel``: the IPC endpoint on the controller's own host, else TCP."""
        ipc = self.extra.get("ipc_addresses") or {}
        if channel in ipc and self.extra.get("host") == _hostname():
            path = ipc[channel][len("ipc://") :]
            if os.path.exists(path):
                return str(ipc[channel])
        return self.addresses[channel]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key.hex(),
            "signature_scheme": self.signature_scheme,
            "addresses": dict(self.addresses),
            "curve_serverkey": self.curve_serverkey,
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "connection info") -> ConnectionInfo:
        try:
            key = bytes.fromhex(data["key"])
            addresses = dict(data["addresses"])
            scheme = data.get("signature_scheme", "hmac-sha256")
        except (KeyError, TypeError, ValueError) as e:
            raise ConnectionFileError(
                f"{source} is not a valid multiengine connection file: {e}"
            ) from None
        if scheme != "hmac-sha256":
            raise ConnectionFileError(f"{source}: unsupported signature scheme {scheme!r}")
        known = {"key", "addresses", "signature_scheme", "curve_serverkey"}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(key, addresses, scheme, data.get("curve_serverkey"), extra)


def _hostname() -> str:
    import socket

    return socket.gethostname()


def write_connection_file(path: Path, info: ConnectionInfo) -> None:
    """Write ``info`` to ``path`` atomically with mode 0600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info.to_json(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_connection_file(path: str | os.PathLike[str]) -> ConnectionInfo:
    p = Path(os.path.expandvars(os.path.expanduser(str(path))))
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConnectionFileError(
            f"connection file {p} does not exist (is the controller running? "
            "start one with `multiengine cluster start`)"
        ) from None
    except OSError as e:
        raise ConnectionFileError(f"cannot read connection file {p}: {e}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConnectionFileError(f"connection file {p} is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConnectionFileError(f"connection file {p} is not a JSON object")
    return ConnectionInfo.from_json(data, str(p))


def connection_from_env() -> ConnectionInfo | None:
    text = os.environ.get(ENV_VAR)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConnectionFileError(f"${ENV_VAR} is not JSON: {e}") from None
    return ConnectionInfo.from_json(data, f"${ENV_VAR}")
