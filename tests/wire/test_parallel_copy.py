"""copy_into: a large copy in pieces on several threads gives the same bytes as one."""

from __future__ import annotations

import os

import numpy as np
import pytest

from multiengine.wire import parallel_copy
from multiengine.wire.parallel_copy import PARALLEL_BELOW, copy_into


@pytest.mark.parametrize(
    "size", [0, 1, 4095, PARALLEL_BELOW - 1, PARALLEL_BELOW, 3 * PARALLEL_BELOW + 12345]
)
def test_every_byte_lands_in_place(size: int) -> None:
    src = np.frombuffer(os.urandom(size), dtype=np.uint8)  # read-only, as bytes are
    dst = bytearray(size + 8)
    copy_into(memoryview(dst)[4 : 4 + size], memoryview(src).cast("B"))
    assert dst[:4] == dst[-4:] == b"\0\0\0\0"  # nothing written outside
    assert bytes(dst[4 : 4 + size]) == src.tobytes()


def test_one_cpu_copies_on_the_calling_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel_copy, "_cpus", lambda: 1)
    monkeypatch.setattr(parallel_copy, "_helpers", None)
    src = bytes(range(256)) * (PARALLEL_BELOW // 256 + 1)
    dst = bytearray(len(src))
    copy_into(memoryview(dst), memoryview(src))
    assert dst == src
    assert parallel_copy._helpers is None  # no thread was started
