"""The client offers the methods of the seed's interfaces, each taking ``targets`` and
``block``, and a chain of them completes with each step's value (seed §A, §B)."""

from __future__ import annotations

import multiengine

CORE_METHODS = [
    "execute",
    "push",
    "pull",
    "push_function",
    "pull_function",
    "get_result",
    "reset",
    "kill",
    "keys",
]


MULTIPLEXER_METHODS = [
    "execute", "push", "pull", "push_function", "pull_function", "get_result", "reset", "keys",
    "kill", "push_serialized", "pull_serialized", "clear_queue", "queue_status",
    "set_properties", "get_properties", "del_properties", "has_properties", "clear_properties",
]  # fmt: skip


MULTIENGINE_METHODS = ["get_ids"]


def test_iengine_core_interface_methods(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testIEngineCoreInterface + testIEngineCoreInterfaceMethods: the client offers every
    # IEngineCore method.
    for name in CORE_METHODS:
        assert callable(getattr(mec, name, None)), name


def test_iengine_core_deferreds(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: The chain execute -> pull -> get_result -> keys -> push completes, each with its
    # value.
    r = mec.execute("a=5", targets=0)
    assert isinstance(r, multiengine.ResultList)
    assert r == [{"input": {"raw": "a=5", "translated": "a=5"}, "number": 1, "id": 0}]
    assert mec.pull("a", targets=0) == [5]
    assert mec.get_result(targets=0) == [
        {"input": {"raw": "a=5", "translated": "a=5"}, "number": 1, "id": 0}
    ]
    keys = mec.keys(targets=0)
    assert len(keys) == 1 and "a" in keys[0]
    assert mec.push(dict(a=10), targets=0) == [None]
    assert mec.pull("a", targets=0) == [10]


def test_iengine_serialized_interface_methods(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testIEngineSerializedInterface + testIEngineSerializedInterfaceMethods
    for name in ("push_serialized", "pull_serialized"):
        assert callable(getattr(mec, name, None)), name


def test_iengine_serialized_deferreds(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testIEngineSerializedDeferreds
    assert mec.push_serialized(dict(key=multiengine.serialize(12345)), targets=0) == [None]
    (s,) = mec.pull_serialized("key", targets=0)
    assert isinstance(s, multiengine.Serialized)
    assert s.unserialize() == 12345


def test_iengine_queued_interface_methods(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testIEngineQueuedInterface + testIEngineQueuedInterfaceMethods. The seed's
    # register_failure_observer/unregister_failure_observer were in-process Twisted hooks of the
    # engine; they have no client counterpart.
    for name in ("clear_queue", "queue_status", *CORE_METHODS):
        assert callable(getattr(mec, name, None)), name


def test_iengine_queued_deferreds(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testIEngineQueuedDeferreds: both complete, non-blocking too.
    pr = mec.clear_queue(targets=0, block=False)
    assert isinstance(pr, multiengine.PendingResult)
    assert pr.r == [None]
    pr = mec.queue_status(targets=0, block=False)
    assert isinstance(pr, multiengine.PendingResult)
    assert pr.r == [(0, {"queue": [], "pending": None})]


def test_imultiengine_interface(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testIMultiEngineInterface + testIEngineMultiplexerInterfaceMethods
    for name in MULTIPLEXER_METHODS + MULTIENGINE_METHODS:
        assert callable(getattr(mec, name, None)), name


def test_iengine_multiplexer_deferreds(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testIEngineMultiplexerDeferreds: the chain completes, each step with its value.
    assert mec.execute("a=5", targets=0) == [
        {"input": {"raw": "a=5", "translated": "a=5"}, "number": 1, "id": 0}
    ]
    assert mec.push(dict(a=5), targets=0) == [None]
    assert mec.push(dict(a=5, b="asdf", c=[1, 2, 3]), targets=0) == [None]
    assert mec.pull(("a", "b", "c"), targets=0) == [[5, "asdf", [1, 2, 3]]]
    assert mec.get_result(targets=0) == [
        {"input": {"raw": "a=5", "translated": "a=5"}, "number": 1, "id": 0}
    ]
    assert mec.reset(targets=0) == [None]
    assert sorted(mec.keys(targets=0)[0]) == ["id", "mpi"]
    assert mec.push_serialized(dict(a=multiengine.serialize(10)), targets=0) == [None]
    assert mec.pull_serialized("a", targets=0)[0].unserialize() == 10
    assert mec.clear_queue(targets=0) == [None]
    assert mec.queue_status(targets=0) == [(0, {"queue": [], "pending": None})]


def test_isynchronous_multiengine_interface(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testISynchronousMultiEngineInterface: every multiplexed method takes block=.
    import inspect

    for name in MULTIPLEXER_METHODS:
        params = inspect.signature(getattr(mec, name)).parameters
        assert "block" in params and "targets" in params, name
    assert mec.block is True and mec.targets == "all"
