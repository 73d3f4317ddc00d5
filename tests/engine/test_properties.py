"""Engine properties, kept but deprecated: every call warns (contract §5); values are
copied in and out, and reset() clears them (seed §A, §B)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import assert_remote, clean_properties, pending
from seed_data import dikt

import multiengine
from multiengine.errors import InvalidProperty

PROPERTIES_METHODS = [
    "set_properties",
    "get_properties",
    "del_properties",
    "has_properties",
    "clear_properties",
]


def test_iengine_core_id_and_properties(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: IEngineCore's attributes ``id`` and ``properties``: an engine knows its id (it is
    # seeded into its namespace), and its properties are reachable through the client.
    assert mec.pull("id", targets=0) == [0]
    assert mec.pull("id") == [0, 1, 2, 3]
    with pytest.warns(DeprecationWarning):
        assert mec.has_properties(("nothing",), targets=0) == [[False]]


def test_iengine_properties_interface_methods(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testIEnginePropertiesInterface + testIEnginePropertiesInterfaceMethods. The seed's
    # ``properties`` attribute of an engine is reached through get_properties.
    for name in PROPERTIES_METHODS:
        assert callable(getattr(mec, name, None)), name


@pytest.mark.parametrize("name", PROPERTIES_METHODS)
def test_properties_methods_warn(mec: multiengine.MultiEngineClient, name: str) -> None:
    # Engine properties are kept, deprecated, with a DeprecationWarning (contract §5).
    args: dict[str, tuple[Any, ...]] = {
        "set_properties": ({"w": 1},),
        "del_properties": (("w",),),
        "has_properties": (("w",),),
    }
    with pytest.warns(DeprecationWarning):
        getattr(mec, name)(*args.get(name, ()), targets=0)


def test_get_set_properties_one_engine(mec: multiengine.MultiEngineClient) -> None:
    # seed §A
    clean_properties(mec)
    # testGetSetProperties
    with pytest.warns(DeprecationWarning):
        assert mec.set_properties(dikt(), targets=0) == [None]
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties(targets=0) == [dikt()]
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties(("c",), targets=0) == [{"c": True}]
    with pytest.warns(DeprecationWarning):
        mec.set_properties(dict(c=False), targets=0)
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties(("c", "d"), targets=0) == [{"c": False, "d": None}]


def test_clear_properties_one_engine(mec: multiengine.MultiEngineClient) -> None:
    # seed §A
    clean_properties(mec)
    # testClearProperties
    with pytest.warns(DeprecationWarning):
        mec.set_properties(dikt(), targets=0)
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties(targets=0) == [dikt()]
    with pytest.warns(DeprecationWarning):
        assert mec.clear_properties(targets=0) == [None]
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties(targets=0) == [{}]


def test_del_has_properties_one_engine(mec: multiengine.MultiEngineClient) -> None:
    # seed §A
    clean_properties(mec)
    # testDelHasProperties
    with pytest.warns(DeprecationWarning):
        mec.set_properties(dikt(), targets=0)
    with pytest.warns(DeprecationWarning):
        assert mec.del_properties(("b", "e"), targets=0) == [None]
    with pytest.warns(DeprecationWarning):
        assert mec.has_properties(("a", "b", "c", "d", "e"), targets=0) == [
            [True, False, True, True, False]
        ]


def test_get_set_properties(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testGetSetProperties (4 engines)
    clean_properties(mec)
    with pytest.warns(DeprecationWarning):
        assert mec.set_properties(dikt()) == 4 * [None]
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties() == 4 * [dikt()]
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties(("c",)) == 4 * [{"c": True}]
    with pytest.warns(DeprecationWarning):
        mec.set_properties(dict(c=False))
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties(("c", "d")) == 4 * [{"c": False, "d": None}]


def test_clear_properties(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testClearProperties (4 engines)
    clean_properties(mec)
    with pytest.warns(DeprecationWarning):
        mec.set_properties(dikt())
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties() == 4 * [dikt()]
    with pytest.warns(DeprecationWarning):
        mec.clear_properties()
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties() == 4 * [{}]


def test_del_has_properties(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testDelHasProperties (4 engines)
    clean_properties(mec)
    with pytest.warns(DeprecationWarning):
        mec.set_properties(dikt())
    with pytest.warns(DeprecationWarning):
        mec.del_properties(("b", "e"))
    with pytest.warns(DeprecationWarning):
        assert mec.has_properties(("a", "b", "c", "d", "e")) == 4 * [
            [True, False, True, True, False]
        ]


def test_get_set_properties_nonblocking(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testGetSetProperties (Synchronous): the same values with block=False + fetch.
    clean_properties(mec)
    with pytest.warns(DeprecationWarning):
        assert pending(mec.set_properties(dikt(), block=False)).r == 4 * [None]
    with pytest.warns(DeprecationWarning):
        assert pending(mec.get_properties(block=False)).r == 4 * [dikt()]
    with pytest.warns(DeprecationWarning):
        assert pending(mec.get_properties(("c",), block=False)).r == 4 * [{"c": True}]
    with pytest.warns(DeprecationWarning):
        assert pending(mec.set_properties(dict(c=False), block=False)).r == 4 * [None]
    with pytest.warns(DeprecationWarning):
        assert pending(mec.get_properties(("c", "d"), block=False)).r == 4 * [
            {"c": False, "d": None}
        ]


def test_clear_properties_nonblocking(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testClearProperties (Synchronous)
    clean_properties(mec)
    with pytest.warns(DeprecationWarning):
        assert pending(mec.set_properties(dikt(), block=False)).r == 4 * [None]
    with pytest.warns(DeprecationWarning):
        assert pending(mec.clear_properties(block=False)).r == 4 * [None]
    with pytest.warns(DeprecationWarning):
        assert pending(mec.get_properties(block=False)).r == 4 * [{}]


def test_del_has_properties_nonblocking(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testDelHasProperties (Synchronous)
    clean_properties(mec)
    with pytest.warns(DeprecationWarning):
        assert pending(mec.set_properties(dikt(), block=False)).r == 4 * [None]
    with pytest.warns(DeprecationWarning):
        assert pending(mec.del_properties(("b", "e"), block=False)).r == 4 * [None]
    with pytest.warns(DeprecationWarning):
        assert pending(mec.has_properties(("a", "b", "c", "d", "e"), block=False)).r == 4 * [
            [True, False, True, True, False]
        ]


def test_reset_clears_properties(mec: multiengine.MultiEngineClient) -> None:
    # seed-system §1.4: reset() clears the engine's properties. (The seed's property tests
    # each ran on a fresh engine; here the fixture's reset() is what makes them fresh.)
    with pytest.warns(DeprecationWarning):
        mec.set_properties(dict(leftover=1), targets=0)
    mec.reset(targets=0)
    try:
        with pytest.warns(DeprecationWarning):
            assert mec.get_properties(targets=0) == [{}]
    finally:  # leave nothing behind for other tests on the shared cluster
        with pytest.warns(DeprecationWarning):
            mec.clear_properties()


def test_strict_dict(mec: multiengine.MultiEngineClient) -> None:
    # seed §A
    clean_properties(mec)
    # testStrictDict, on the engine. The seed's ``lambda _: None`` was its example of an
    # unpicklable value; a lock is one under any pickler, and cannot be deep-copied either.
    mec.execute(
        "from multiengine.engine import get_engine; p = get_engine(id).properties; "
        "import threading",
        targets=0,
    )
    ev = assert_remote(InvalidProperty, mec.execute, "p['a'] = threading.Lock()", targets=0).elist[
        0
    ][1]
    assert "'a'" in str(ev)
    # values are copied in and out: mutating what one reads changes nothing stored
    mec.execute("p['a'] = list(range(5))", targets=0)
    mec.execute("p['a'].append(5)", targets=0)
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties("a", targets=0) == [{"a": [0, 1, 2, 3, 4]}]
    # the same for a value set from the client: the engine only ever mutates a copy
    with pytest.warns(DeprecationWarning):
        mec.set_properties(dict(b=[1]), targets=0)
    mec.execute("p['b'].append(2)", targets=0)
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties(("a", "b"), targets=0) == [{"a": [0, 1, 2, 3, 4], "b": [1]}]
