"""The direct path on one host: what a client and an engine both need to know of it.

A client sends a small command (``DIRECT_COMMANDS``) straight to an engine of its own
host over IPC, and the engine answers straight to the client's *fg* socket: two hops
instead of four through the controller, which is told beside them (``direct_job``
from the client, ``direct_done`` from the engine) and keeps the books: history,
``queue_status``, interrupts, engine loss. docs/protocol.md §6, "A direct path on one
host", has the whole design; the client's side is ``client/direct.py``, the engine's
``engine/direct.py``.

The setting is ``$MULTIENGINE_DIRECT`` (on by default): off in an engine, it offers no
direct socket; off in a client, the client never uses one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..config import DIRECT_PATH, parse_switch
from ..errors import ConfigError

__all__ = ["ENV_DIRECT", "enabled", "endpoint_beside"]

ENV_DIRECT = "MULTIENGINE_DIRECT"


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the direct path is on: ``$MULTIENGINE_DIRECT`` of ``env`` (this process's
    environment by default), else the default; ConfigError if it is not on/off."""
    text = (os.environ if env is None else env).get(ENV_DIRECT, "").strip().lower()
    if not text:
        return DIRECT_PATH
    try:
        return parse_switch(text)
    except ValueError as e:
        raise ConfigError(f"${ENV_DIRECT}: {e}") from None


def endpoint_beside(controller_url: str, name: str) -> str | None:
    """An IPC endpoint named ``name`` in the directory of the controller's IPC endpoint
    ``controller_url`` (the cluster directory, mode 0700); None when the controller is
    not reached over IPC (another host: no direct path)."""
    if not controller_url.startswith("ipc://"):
        return None
    folder = os.path.dirname(controller_url[len("ipc://") :])
    path = os.path.join(folder, name)
    if len(path.encode()) > 100:  # (sockaddr_un holds 107 bytes)
        return None
    return "ipc://" + path
