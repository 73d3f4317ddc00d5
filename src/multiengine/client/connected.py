"""What every client has: finding the controller, connecting, closing."""

from __future__ import annotations

import os
from typing import Any

from ..wire.connection import ConnectionInfo, connection_from_env, read_connection_file
from .core import ClientCore

__all__ = ["Connected", "resolve_connection"]


def resolve_connection(
    profile: str | None = "default",
    cluster_dir: str | os.PathLike[str] | None = None,
    connection_file: str | os.PathLike[str] | None = None,
) -> ConnectionInfo:
    """Find the client connection info: a file, ``$MULTIENGINE_CONNECTION``,
    a cluster dir or a profile."""
    if connection_file is not None:
        return read_connection_file(connection_file)
    if cluster_dir is None:
        env = connection_from_env()
        if env is not None:
            return env
    from ..runtime import ClusterDir

    cdir = ClusterDir.find(profile, cluster_dir).require()
    return read_connection_file(cdir.client_file)


class Connected:
    """A client of one controller: ``profile``, ``cluster_dir`` or ``connection_file``
    say which; ``timeout`` is how long to wait for it to answer when connecting."""

    def __init__(
        self,
        profile: str | None = "default",
        cluster_dir: str | os.PathLike[str] | None = None,
        connection_file: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._core = ClientCore(resolve_connection(profile, cluster_dir, connection_file), timeout)
        self._calls = self._make_calls()

    def _make_calls(self) -> Any:
        """What the client's calls are built from (``calls.py``, ``taskcalls.py``)."""
        return None

    def close(self) -> None:
        self._core.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._core.url}>"
