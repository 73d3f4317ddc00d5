"""``mec.benchmark()``: the seed's quick measurement of latency and push throughput."""

from __future__ import annotations

import timeit
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .multiengine import MultiEngineClient

__all__ = ["benchmark"]


def benchmark(mec: MultiEngineClient, push_size: int = 10000) -> dict[str, tuple[float, str]]:
    """Best of 3 x 10: ``execute('pass')`` on one and on all engines, and pushes of
    ``push_size`` float64s to all and to one (the push entries need numpy)."""
    out: dict[str, tuple[float, str]] = {}
    first = mec.get_ids()[0]
    t = min(timeit.repeat(lambda: mec.execute("pass", first, True), repeat=3, number=10)) / 10
    out["single_engine_latency"] = (1000 * t, "msec")
    t = min(timeit.repeat(lambda: mec.execute("pass", "all", True), repeat=3, number=10)) / 10
    out["all_engine_latency"] = (1000 * t, "msec")
    try:
        import numpy as np
    except ImportError:
        return out
    d = {"a": np.zeros(push_size, dtype="float64")}
    t = min(timeit.repeat(lambda: mec.push(d, "all", True), repeat=3, number=10)) / 10
    out["all_engine_push"] = (1e-6 * push_size * 8 / t, "MB/sec")
    t = min(timeit.repeat(lambda: mec.push(d, first, True), repeat=3, number=10)) / 10
    out["single_engine_push"] = (1e-6 * push_size * 8 / t, "MB/sec")
    return out
