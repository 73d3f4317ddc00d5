"""A joblib backend: ``Parallel(...)`` calls run as load-balanced tasks on the engines.

    import joblib, multiengine
    multiengine.register_joblib_backend()
    with joblib.parallel_backend("multiengine", profile="default"):
        joblib.Parallel(n_jobs=-1)(joblib.delayed(f)(x) for x in data)

Backend arguments are those of TaskClient (``profile``, ``cluster_dir``,
``connection_file``), or ``client=`` an existing TaskClient. ``n_jobs=-1`` means as
many as there are engines; ``n_jobs=0`` is refused with joblib's own ValueError.

``joblib.Parallel`` with this backend cannot be nested inside a task: a task runs on an
engine, which has no client of its own and cannot wait for other engines' tasks while
it holds its engine (docs/interactive.md).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from joblib._parallel_backends import ParallelBackendBase

from .client.executor import TaskExecutor
from .client.taskclient import TaskClient

__all__ = ["MultiEngineBackend", "register"]


class MultiEngineBackend(ParallelBackendBase):  # type: ignore[misc]
    supports_retrieve_callback = True
    supports_timeout = True
    default_n_jobs = -1

    def __init__(
        self,
        client: TaskClient | None = None,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        **connect: Any,
    ) -> None:
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads)
        self._client = client
        self._connect = connect
        self._own_client: TaskClient | None = None
        self._executor: TaskExecutor | None = None

    def _task_client(self) -> TaskClient:
        if self._client is None:
            if self._own_client is None:
                self._own_client = TaskClient(**self._connect)
            return self._own_client
        return self._client

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")  # joblib's own words
        if n_jobs is not None and n_jobs > 0:
            return n_jobs
        return max(1, len(self._task_client().get_ids()))

    def configure(self, n_jobs: int = 1, parallel: Any = None, **backend_args: Any) -> int:
        self.parallel = parallel
        n = self.effective_n_jobs(n_jobs)  # refuses n_jobs=0 before anything is opened
        self._executor = self._task_client().executor()
        return n

    def submit(self, func: Any, callback: Any = None) -> Future[Any]:
        assert self._executor is not None, "configure() first"
        future = self._executor.submit(func)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def retrieve_result_callback(self, out: Future[Any]) -> Any:
        return out.result()

    def retrieve_result(self, out: Future[Any], timeout: float | None = None) -> Any:
        return out.result(timeout)

    def terminate(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._own_client is not None:
            self._own_client.close()
            self._own_client = None

    def abort_everything(self, ensure_ready: bool = True) -> None:
        self.terminate()
        if ensure_ready:
            self.configure(
                n_jobs=self.parallel.n_jobs if self.parallel is not None else -1,
                parallel=self.parallel,
            )


def register(name: str = "multiengine", make_default: bool = False) -> None:
    """Make ``joblib.parallel_backend(name)`` run on a multiengine cluster."""
    import joblib

    joblib.register_parallel_backend(name, MultiEngineBackend, make_default=make_default)
