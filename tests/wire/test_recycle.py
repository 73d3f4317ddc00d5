"""Large receive buffers are used again once nothing refers to them (in a process that
enables it), are writable arrays of their own, and a discarded one is never reused."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import numpy as np
import pytest

from multiengine.wire import chunks, recycle

SIZE = 3 * recycle.MIN_SIZE + 17


def address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


@pytest.fixture
def enabled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(recycle, "_enabled", True)
    monkeypatch.setattr(recycle, "_free", type(recycle._free)())
    yield
    gc.collect()


@pytest.mark.usefixtures("enabled")
def test_memory_of_a_collected_buffer_is_handed_out_again() -> None:
    a = recycle.take(SIZE)
    assert a.nbytes == SIZE and a.flags.writeable and a.dtype == np.uint8
    a[:] = 7
    where = address(a)
    del a
    b = recycle.take(SIZE)
    assert address(b) == where
    c = recycle.take(SIZE)  # b still lives: c has memory of its own
    assert address(c) != where
    b[:] = 2
    c[:] = 1
    assert (b == 2).all()  # never shared with a live buffer


@pytest.mark.usefixtures("enabled")
def test_a_discarded_buffer_is_not_reused() -> None:
    a = recycle.take(SIZE)
    where = address(a)
    recycle.discard(a)
    del a
    assert not recycle._free  # nothing was given back: its memory went to the system
    assert where  # (the address may well be the kernel's pick again for a new mapping)


@pytest.mark.usefixtures("enabled")
def test_unused_mappings_are_let_go_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    del_me = recycle.take(SIZE)
    del del_me
    assert len(recycle._free) == 1
    monkeypatch.setattr(recycle, "IDLE", 0.0)
    recycle.prune()
    assert not recycle._free


def test_without_enable_every_buffer_is_new_memory() -> None:
    assert not recycle._enabled  # (a client: nothing kept after the user drops an array)
    a = recycle.take(SIZE)
    del a
    assert not recycle._free


@pytest.mark.usefixtures("enabled")
def test_assembled_pieces_land_in_a_writable_buffer() -> None:
    data = np.random.default_rng(3).random(SIZE // 8)
    sizes, pieces = chunks.split([data], 1 << 20)
    (out,) = chunks.assemble(sizes, pieces, 1 << 20)
    assert out.flags.writeable
    np.testing.assert_array_equal(out.view("f8"), data)
