"""The direct path on one host: what a client and an engine both need to know of it.

A client sends a small command (``DIRECT_COMMANDS``) straight to an engine of its own
host, and the engine answers on the same connection (a Unix stream socket, not ZeroMQ:
wire/stream.py says why): two hops instead of four through the controller, which is
told afterwards (the engine's reports, ``direct_done``/``direct_dones``; the client's
``direct_job`` when an answer is late) and keeps the books: history, ``queue_status``,
interrupts, engine loss. docs/protocol.md §6, "A direct path on one host", has the
whole design; the client's side is ``client/direct.py``, the engine's
``engine/direct.py``.

The setting is ``$MULTIENGINE_DIRECT`` (on by default): off in an engine, it offers no
direct socket; off in a client, the client never uses one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..config import DIRECT_PATH, env_switch
from .stream import SCHEME

__all__ = [
    "ENV_DIRECT",
    "ANNOUNCE_AFTER",
    "REPORT_AT_MOST",
    "REPORT_WITHIN",
    "enabled",
    "endpoint_beside",
]

ENV_DIRECT = "MULTIENGINE_DIRECT"

# The controller's books of direct commands cost it two messages a command (two wake-ups
# of its threads): with everything on one CPU, 478 -> 252 µs of CPU per
# ``execute('pass')`` without them. So a command answered quickly is reported afterwards,
# several at a time: its client announces it (``direct_job``) only when its answer has
# not come within ANNOUNCE_AFTER seconds, or before anything else it sends the
# controller; its engine reports it in a ``direct_dones`` of at most REPORT_AT_MOST
# commands, sent at most REPORT_WITHIN seconds after the first of them, or before it
# runs a command of the controller's. A command that runs ANNOUNCE_AFTER or longer, or
# fails, is reported at once (``direct_done``), as one that was announced expects.
ANNOUNCE_AFTER = 0.005
REPORT_AT_MOST = 256
REPORT_WITHIN = 0.05


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the direct path is on: ``$MULTIENGINE_DIRECT`` of ``env`` (this process's
    environment by default), else the default; ConfigError if it is not on/off."""
    return env_switch(ENV_DIRECT, DIRECT_PATH, env)


def endpoint_beside(controller_url: str, name: str) -> str | None:
    """A ``unix://`` address (wire/stream.py) named ``name`` in the directory of the
    controller's IPC endpoint ``controller_url`` (the cluster directory, mode 0700);
    None when the controller is not reached over IPC (another host: no direct path)."""
    if not controller_url.startswith("ipc://"):
        return None
    folder = os.path.dirname(controller_url[len("ipc://") :])
    path = os.path.join(folder, name)
    if len(path.encode()) > 100:  # (sockaddr_un holds 107 bytes)
        return None
    return SCHEME + path
