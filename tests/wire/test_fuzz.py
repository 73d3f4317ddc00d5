"""Hostile input, fuzzed: property-based runs against a real controller and a real engine.

Messages from tests/fuzzing.py (malformed, truncated, unsigned, signed with another key,
stale, replayed, oversized, and validly signed ones with bad header values of every
message type) go to every socket of a controller (client, engine and heartbeat ROUTERs)
and of an engine (its command and heartbeat sockets). After each example the process
lives and a real request is answered; at the end nothing was obeyed that should not be
(a canary file and name stay absent, a replayed command did not run again), exactly the
messages that fail verification were dropped and counted, no process logged a
traceback, and the controller's memory stayed bounded.

A fixed set of examples (derandomized); ``MULTIENGINE_FUZZ_SEED`` explores others and
``MULTIENGINE_FUZZ_EXAMPLES`` sets how many. The longer, timed run is benchmarks/fuzz.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fuzzing import ControllerFuzz, EngineFuzz
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import multiengine

pytestmark = pytest.mark.usefixtures("any_header")  # made-up and malformed messages

EXAMPLES = int(os.environ.get("MULTIENGINE_FUZZ_EXAMPLES", "200"))
SEED = os.environ.get("MULTIENGINE_FUZZ_SEED")  # to explore: other examples than the fixed ones


def _fuzz(example: Callable[[st.DataObject], None]) -> None:
    """Run ``example`` on EXAMPLES drawings, the same ones every run unless SEED is set."""
    test: Any = given(st.data())(example)
    if SEED is not None:
        test = seed(int(SEED))(test)
    settings(
        max_examples=EXAMPLES,
        derandomize=SEED is None,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )(test)()


@pytest.mark.fault(
    section="hostile-input",
    fault="oversized: frames of 1 to 16 MiB, 20,000 frames, a header grown by 8 MiB",
    outcome=(
        "read, then dropped and counted like any other; the memory is returned (the fuzzer checks "
        "the controller's RSS stays within 64 MB of its start)"
    ),
    also=["tests/wire/test_fuzz.py::test_fuzz_an_engine"],
)
def test_fuzz_the_controller(
    fresh_cluster: Callable[..., multiengine.Cluster],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # big messages in memory of their own, returned when freed: the controller's RSS
    # then shows leaks, not glibc keeping freed heap (whose threshold grows otherwise)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", str(256 * 1024))
    fuzz = ControllerFuzz(fresh_cluster(n=1), tmp_path)
    try:
        _fuzz(fuzz.example)
        figures = fuzz.verdict()
    finally:
        fuzz.close()
    print(f"\nfuzzed the controller: {figures}")
    assert figures["messages"].keys() >= {"signed", "replay", "oversized", "wrong_key"}


@pytest.mark.fault(
    section="hostile-input",
    fault=(
        "validly signed, but with wrong types, missing fields, huge or negative numbers, bad "
        "`parts`/`xfer`/`tasks` lists, unknown types, answers aimed at a real client's sockets"
    ),
    outcome=(
        "controller: an `error` answer or a logged warning, no traceback; engine: an error reply "
        "for that command (`KeyError`, `TypeError`, `SerializationError`), an `interrupt` for a "
        "non-integer command is ignored, the heartbeat thread survives any handler error; client: "
        "drops an answer it cannot route"
    ),
    also=["tests/wire/test_fuzz.py::test_fuzz_the_controller"],
)
def test_fuzz_an_engine(tmp_path: Path) -> None:
    fuzz = EngineFuzz(tmp_path)
    try:
        _fuzz(fuzz.example)
        figures = fuzz.verdict()
    finally:
        fuzz.close()
    print(f"\nfuzzed an engine: {figures}")
    assert figures["messages"].keys() >= {"signed", "replay", "oversized", "wrong_key"}
