"""Tasks and task calls check their arguments when made: TypeError or ValueError."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import multiengine
from multiengine import MapTask, StringTask


def test_map_task_args() -> None:
    # seed §C
    with pytest.raises(TypeError):
        MapTask("asdfasdf")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        MapTask(lambda x: x, 10)
    with pytest.raises(TypeError):
        MapTask(lambda x: x, (10,), 30)  # type: ignore[arg-type]


def _f(x: int) -> int:
    return x


BAD_TASKS: list[Any] = [
    pytest.param(lambda: StringTask(5), id="expression-not-str"),
    pytest.param(lambda: StringTask(b"a=1"), id="expression-bytes"),
    pytest.param(lambda: StringTask("a=1", pull=5), id="pull-int"),
    pytest.param(lambda: StringTask("a=1", pull=["a", 5]), id="pull-list-with-int"),
    pytest.param(lambda: StringTask("a=1", push=[("a", 1)]), id="push-not-dict"),
    pytest.param(lambda: MapTask("asdfasdf"), id="function-str"),
    pytest.param(lambda: MapTask(None), id="function-none"),
    pytest.param(lambda: MapTask(_f, 10), id="args-int"),
    pytest.param(lambda: MapTask(_f, (10,), 30), id="kwargs-int"),
    pytest.param(lambda: StringTask("a=1", retries=-1), id="retries-negative"),
    pytest.param(lambda: MapTask(_f, (1,), retries=1.5), id="retries-float"),
    pytest.param(lambda: StringTask("a=1", priority="high"), id="priority-str"),
    pytest.param(lambda: MapTask(_f, (1,), priority=1.5), id="priority-float"),
    pytest.param(lambda: StringTask("a=1", time_limit=0), id="time-limit-zero"),
    pytest.param(lambda: MapTask(_f, (1,), time_limit=-1.0), id="time-limit-negative"),
    pytest.param(lambda: StringTask("a=1", time_limit="10"), id="time-limit-str"),
    pytest.param(lambda: StringTask("a=1", retry_on="garbage"), id="retry-on-str"),
    pytest.param(lambda: MapTask(_f, (1,), retry_on=42), id="retry-on-int"),
    pytest.param(lambda: MapTask(_f, (1,), retry_on=int), id="retry-on-not-exception"),
    pytest.param(lambda: StringTask("a=1", retry_on=(ValueError, "x")), id="retry-on-mixed"),
    pytest.param(lambda: StringTask("a=1", recovery_task="a=2"), id="recovery-not-task"),
]


@pytest.mark.parametrize("make", BAD_TASKS)
def test_bad_task_arguments_raise_type_error(make: Callable[[], Any]) -> None:
    with pytest.raises(TypeError):
        make()


def test_good_task_arguments_are_accepted() -> None:
    t = StringTask(
        "a=1", pull=("a",), push={}, retries=2, priority=-3, time_limit=1, retry_on="engine"
    )
    assert (t.retries, t.priority, t.time_limit) == (2, -3, 1)
    m = MapTask(_f, [1], {}, retry_on=(ValueError, KeyError), time_limit=0.5, recovery_task=t)
    assert m.recovery_task is t


def test_run_rejects_what_is_not_a_task(tc: multiengine.TaskClient) -> None:
    with pytest.raises(TypeError):
        tc.run("a = 1")  # type: ignore[arg-type]


def test_imap_bad_arguments(tc: multiengine.TaskClient) -> None:
    with pytest.raises(TypeError):
        tc.imap(42, range(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        tc.imap(abs, range(3), chunksize=0)
