"""Warm memory (multiengine.wire.warm): a long list rebuilt from its slices and then
dropped leaves its arenas mapped, so that the next one is built in them; only small
immutable items are pinned, and never more than PINS.

What is counted is the arenas CPython's allocator maps (``sys._debugmallocstats``), not
time, so the assertions do not depend on the machine's load; they are counted in a
fresh interpreter, where a list of 400k ints needs new arenas (a process that ran other
tests has free room left in its own).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from multiengine.wire import warm

ITEMS = 400_000  # 12.8 MB of ints: a dozen 1 MiB arenas

REBUILD = r"""
import json, os, re, sys, tempfile
from multiengine.wire import slices, warm

def arenas_mapped_so_far():
    # the allocator's statistics go to the C stderr: read them back from a file
    with tempfile.TemporaryFile() as f:
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode()
    return int(re.search(r"# arenas allocated total\s+=\s+(\d+)", text).group(1))

xs = list(range(2 * 10**6, 2 * 10**6 + int(sys.argv[1])))
pickles = slices.dump(xs)
del xs
counts = []
for _ in range(4):
    if sys.argv[2] == "release":
        warm.release()
    before = arenas_mapped_so_far()
    rebuilt = slices.load(pickles)
    counts.append(arenas_mapped_so_far() - before)
    assert rebuilt[-1] == 2 * 10**6 + int(sys.argv[1]) - 1
    del rebuilt
print(json.dumps(counts))
"""


def _new_arenas_to_rebuild(mode: str) -> list[int]:
    run = subprocess.run(
        [sys.executable, "-c", REBUILD, str(ITEMS), mode],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    counts: list[int] = json.loads(run.stdout)
    return counts


def test_a_list_rebuilt_after_the_last_was_dropped_goes_in_its_arenas() -> None:
    counts = _new_arenas_to_rebuild("keep")
    assert counts[0] >= 8, counts  # 12.8 MB of ints: new arenas (a few had room)
    assert max(counts[1:]) <= 1, counts  # the arenas the dropped list left


def test_without_pins_each_rebuilt_list_maps_new_arenas() -> None:
    # what the pins prevent (and so what the test above would see without them)
    counts = _new_arenas_to_rebuild("release")
    assert min(counts) >= 8, counts


@pytest.fixture
def no_pins() -> Iterator[None]:
    warm.release()
    yield
    warm.release()


def test_only_small_immutable_items_are_pinned_one_in_a_stride(no_pins: None) -> None:
    ints = list(range(10**6, 10**6 + 3 * warm.STRIDE))
    warm.keep(ints)
    assert list(warm._pins) == ints[:: warm.STRIDE]
    warm.release()
    objects = [[i] for i in range(3 * warm.STRIDE)] + [f"s{i}" for i in range(warm.STRIDE)]
    warm.keep(objects)  # lists and strings: a user's objects are never kept alive
    assert warm.kept() == 0
    warm.keep([0.5] * (2 * warm.STRIDE))
    assert warm.kept() == 2


def test_no_more_than_pins_items_are_kept_the_newest(no_pins: None) -> None:
    for n in range(warm.PINS + 10):
        warm.keep([10**9 + n] * warm.STRIDE)  # one pin each (shorter lists get none)
    assert warm.kept() == warm.PINS
    assert warm._pins[-1] == 10**9 + warm.PINS + 9  # the oldest went first
