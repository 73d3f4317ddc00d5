"""map, mapper, @parallel and imap on the TaskClient: order kept, chunks, lazy and
unordered imap over unbounded iterables, a failing item's own exception (seed §C)."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from helpers import Latch, wait_for_path, wait_until

import multiengine
from multiengine.cluster.cluster import Cluster


def test_mapper(tc: multiengine.TaskClient) -> None:
    # seed §C
    m = tc.mapper()
    assert m.task_controller is tc
    assert m.clear_before is False
    assert m.clear_after is False
    assert m.retries == 0
    assert m.recovery_task is None
    assert m.depend is None
    assert m.block is True


def test_map_default(tc: multiengine.TaskClient) -> None:
    # seed §C
    m = tc.mapper()
    assert m.map(lambda x: 2 * x, range(10)) == [2 * x for x in range(10)]
    assert tc.map(lambda x: 2 * x, range(10)) == [2 * x for x in range(10)]


def test_map_noblock(fresh_cluster: Callable[..., Cluster]) -> None:
    # seed §C
    tc = fresh_cluster(2).task_client()
    ids = tc.mapper(block=False).map(lambda x: 2 * x, range(10))
    assert ids == list(range(10))  # the task ids of a fresh controller
    tc.barrier(ids)
    assert [tc.get_task_result(t) for t in ids] == [2 * x for x in range(10)]


def test_mapper_fail(tc: multiengine.TaskClient) -> None:
    # seed §C
    with pytest.raises(ZeroDivisionError):
        tc.mapper().map(lambda x: 1 / 0, range(10))
    with pytest.raises(ZeroDivisionError):
        tc.map(lambda x: 1 / 0, range(10))


def test_map_unequal_lengths(tc: multiengine.TaskClient) -> None:
    with pytest.raises(ValueError):
        tc.map(lambda x, y: x + y, range(3), range(4))
    with pytest.raises(ValueError):
        tc.mapper().map(lambda x, y: x + y, range(3), range(4))


def test_parallel(tc: multiengine.TaskClient) -> None:
    # seed §C
    p = tc.parallel()
    assert callable(p)

    @p
    def double(x: int) -> int:
        """Twice x."""
        return 2 * x

    assert double.__name__ == "double" and double.__doc__ == "Twice x."
    assert double(range(10)) == [2 * x for x in range(10)]


def test_parallel_noblock(fresh_cluster: Callable[..., Cluster]) -> None:
    # seed §C
    tc = fresh_cluster(2).task_client()

    @tc.parallel(block=False)
    def double(x: int) -> int:
        return 2 * x

    ids = double(range(10))
    assert ids == list(range(10))
    tc.barrier(ids)
    assert [tc.get_task_result(t) for t in ids] == [2 * x for x in range(10)]


def test_parallel_fail(tc: multiengine.TaskClient) -> None:
    # seed §C
    @tc.parallel()
    def f(x: int) -> float:
        return 1 / 0

    with pytest.raises(ZeroDivisionError):
        f(range(10))


def test_map_chunksize_keeps_order(tc: multiengine.TaskClient) -> None:
    assert tc.map(lambda x: x * x, range(100), chunksize=7) == [x * x for x in range(100)]
    assert tc.map(lambda a, b: a - b, range(10), range(10, 20), chunksize=3) == [-10] * 10
    assert tc.map(lambda x: x, [], chunksize=4) == []
    assert list(tc.imap(lambda x: -x, range(23), chunksize=5)) == [-x for x in range(23)]


def test_map_chunksize_makes_fewer_tasks(fresh_cluster: Callable[..., Cluster]) -> None:
    tc = fresh_cluster(2).task_client()
    assert tc.map(lambda x: x + 1, range(100), chunksize=7) == list(range(1, 101))
    assert tc.queue_status()["succeeded"] == 15  # ceil(100 / 7)


def test_imap_over_an_unbounded_generator(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(2)
    tc = c.task_client()
    it = tc.imap(lambda x: x * x, itertools.count())
    assert list(itertools.islice(it, 50)) == [x * x for x in range(50)]
    it.close()  # stop consuming: no hang, no error

    pulled = 0

    def source() -> Any:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield i

    it2 = tc.imap(lambda x: x + 1, source(), window=16)
    assert list(itertools.islice(it2, 30)) == list(range(1, 31))
    assert pulled <= 30 + 16  # lazy: only a window ahead of what was consumed
    del it2
    # the client goes on working, and what was submitted ahead drains
    assert tc.map(lambda x: 2 * x, range(5)) == [0, 2, 4, 6, 8]
    wait_until(
        lambda: (s := tc.queue_status())["scheduled"] + s["pending"] == 0,
        20,
        message="the queue to drain",
    )


def test_imap_unordered(tc: multiengine.TaskClient, latch: Callable[[], Latch]) -> None:
    gate = latch()
    path = str(gate.path)

    def f(x: int) -> int:
        if x == 0:
            wait_for_path(path)  # the first item is held back until the gate opens
        return x

    it = tc.imap(f, range(12), ordered=False)
    first = next(it)
    assert first != 0  # the held-back first item does not hold back the others
    gate.set()
    out = [first, *it]
    assert Counter(out) == Counter(range(12))
    assert list(tc.imap(f, range(12))) == list(range(12))
    assert Counter(tc.imap(lambda x: x % 3, range(30), ordered=False, chunksize=4)) == Counter(
        x % 3 for x in range(30)
    )


def test_map_failing_item_raises_its_exception(tc: multiengine.TaskClient) -> None:
    with pytest.raises(ZeroDivisionError):
        tc.map(lambda x: 1 / (x - 3), range(6))
    with pytest.raises(ZeroDivisionError):
        tc.map(lambda x: 1 / (x - 3), range(6), chunksize=2)
    it = tc.imap(lambda x: 12 // (x - 3), range(6))
    assert [next(it), next(it), next(it)] == [-4, -6, -12]  # the items before it arrive
    with pytest.raises(ZeroDivisionError):
        next(it)


def test_a_map_submitted_in_many_pieces_keeps_every_result_and_its_order(
    tc: multiengine.TaskClient,
) -> None:
    # A map sends its next submission while it waits for results: with a small window
    # it does so dozens of times, and no result is lost, doubled or out of place.
    assert tc.map(lambda x: 3 * x, range(3000)) == [3 * x for x in range(3000)]
    assert list(tc.imap(lambda x: x - 1, range(700), window=40)) == list(range(-1, 699))
    unordered = tc.imap(lambda x: x % 7, range(700), ordered=False, window=40)
    assert Counter(unordered) == Counter(x % 7 for x in range(700))
    # what a task prints still reaches the client while a map sends submissions ahead
    lines: list[str] = []
    tc.live_output = True
    tc.output_hook = lambda _engine, _name, text: lines.append(text)
    assert list(tc.imap(lambda x: print(f"item {x}") or x, range(300), window=40)) == list(
        range(300)
    )
    wait_until(
        lambda: Counter("".join(lines).splitlines()) == Counter(f"item {x}" for x in range(300)),
        20,
        message="every task's output",
    )
    s = tc.queue_status()
    assert s["scheduled"] + s["pending"] == 0  # every submission was answered and ran
