"""multiengine: interactive parallel computing for Python.

Start a controller and engines (``multiengine cluster start -n 4`` or
``with multiengine.Cluster(n=4) as cluster:``), then drive them with a
:class:`MultiEngineClient`: ``execute``, ``push``/``pull``, ``scatter``/``gather``,
parallel ``map``.

Names load lazily, so ``import multiengine`` (and every engine) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AsyncMultiEngineClient",
    "AsyncTaskClient",
    "Cluster",
    "ClusterStartError",
    "CompositeError",
    "MapTask",
    "MultiEngineClient",
    "PendingResult",
    "ResultList",
    "ResultNS",
    "Serialized",
    "StringTask",
    "TaskClient",
    "TaskRejectError",
    "TaskResult",
    "errors",
    "register_joblib_backend",
    "serialize",
    "wait_interactive",
]

_LAZY = {
    "AsyncMultiEngineClient": ("multiengine.client.aio", "AsyncMultiEngineClient"),
    "AsyncTaskClient": ("multiengine.client.aio", "AsyncTaskClient"),
    "Cluster": ("multiengine.cluster.cluster", "Cluster"),
    "MultiEngineClient": ("multiengine.client.multiengine", "MultiEngineClient"),
    "PendingResult": ("multiengine.client.results", "PendingResult"),
    "ResultList": ("multiengine.client.results", "ResultList"),
    "ResultNS": ("multiengine.client.results", "ResultNS"),
    "Serialized": ("multiengine.wire.serialize", "Serialized"),
    "TaskClient": ("multiengine.client.taskclient", "TaskClient"),
    "StringTask": ("multiengine.client.tasks", "StringTask"),
    "MapTask": ("multiengine.client.tasks", "MapTask"),
    "TaskResult": ("multiengine.client.tasks", "TaskResult"),
    "serialize": ("multiengine.wire.serialize", "serialize"),
    "ClusterStartError": ("multiengine.errors", "ClusterStartError"),
    "CompositeError": ("multiengine.errors", "CompositeError"),
    "TaskRejectError": ("multiengine.errors", "TaskRejectError"),
    "errors": ("multiengine.errors", None),
    "wait_interactive": ("multiengine.client.results", "wait_interactive"),
}

if TYPE_CHECKING:
    from . import errors
    from .client.aio import AsyncMultiEngineClient, AsyncTaskClient
    from .client.multiengine import MultiEngineClient
    from .client.results import PendingResult, ResultList, ResultNS, wait_interactive
    from .client.taskclient import TaskClient
    from .client.tasks import MapTask, StringTask, TaskResult
    from .cluster.cluster import Cluster
    from .errors import ClusterStartError, CompositeError, TaskRejectError
    from .wire.serialize import Serialized, serialize


def register_joblib_backend(name: str = "multiengine", make_default: bool = False) -> None:
    """Make ``joblib.parallel_backend("multiengine", profile=...)`` run on the engines."""
    from .joblib_backend import register

    register(name, make_default)


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext multiengine``: the parallel magics (%px, %%px, %pxresult, %pxconfig,
    %autopx, %result); ``mec.activate()`` inside IPython loads them too."""
    from .magics import load_ipython_extension as load

    load(ip)


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'multiengine' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
