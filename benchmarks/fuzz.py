"""Hostile input, fuzzed for a while: the long run of tests/wire/test_fuzz.py.

Hostile multipart messages (tests/fuzzing.py: malformed, truncated, unsigned, forged,
stale, replayed, oversized, and validly signed ones with bad header values) go to every
socket of a real controller, then of a real engine, in rounds of ``--round`` random
examples, until ``--duration`` seconds have passed (shared between the two). After each
example the target must be alive and answer a real request; at the end of each part,
nothing may have been obeyed, every rejected message must have been counted as dropped,
no traceback logged, and the controller's memory must be bounded.

    python benchmarks/fuzz.py --duration 600            # ten minutes, new examples
    python benchmarks/fuzz.py --duration 60 --seed 1    # the same examples again

Prints the examples run, examples per second, messages sent by kind, messages dropped
and crashes (0, or the exit status is 1 with the failing example).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzzing import ControllerFuzz, EngineFuzz  # noqa: E402

import multiengine  # noqa: E402
from multiengine.wire import message  # noqa: E402


def run_for(fuzz: Any, seconds: float, per_round: int, rng: random.Random) -> int:
    """Rounds of ``per_round`` examples until ``seconds`` have passed; rounds run."""
    end = time.monotonic() + seconds
    rounds = 0
    while rounds == 0 or time.monotonic() < end:
        test: Any = given(st.data())(fuzz.example)
        test = seed(rng.getrandbits(64))(test)
        settings(
            max_examples=per_round,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )(test)()
        rounds += 1
    return rounds


def report(name: str, figures: dict[str, Any], seconds: float) -> None:
    n = figures["examples"]
    rss = figures["rss_kb"] if isinstance(figures["rss_kb"], list) else [figures["rss_kb"]]
    print(
        f"{name}: {n} examples in {seconds:.0f} s ({n / seconds:.1f}/s), "
        f"{sum(figures['messages'].values())} messages {figures['messages']}, "
        f"dropped {figures['dropped']}, RSS {rss[0] // 1024} MB at the start, "
        f"{max(rss) // 1024} MB at most, {rss[-1] // 1024} MB at the end; crashes 0",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds in all")
    parser.add_argument("--round", type=int, default=100, help="examples per round")
    parser.add_argument("--seed", type=int, default=None, help="repeat a run")
    parser.add_argument(
        "--only", choices=["controller", "engine"], default=None, help="fuzz one side"
    )
    args = parser.parse_args()
    message._CHECK = False  # the fuzzer sends headers the protocol table does not allow
    logging.basicConfig(level=logging.ERROR)  # the client's warnings of what it dropped
    # big messages always in memory of their own, returned when freed: RSS shows leaks,
    # not glibc keeping freed heap (its threshold otherwise grows to the largest seen)
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(256 * 1024))
    run_seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"seed {run_seed}", flush=True)
    rng = random.Random(run_seed)
    sides = [args.only] if args.only else ["controller", "engine"]
    share = args.duration / len(sides)
    try:
        with tempfile.TemporaryDirectory(prefix="me-fuzz-") as tmp:
            if "controller" in sides:
                with multiengine.Cluster(
                    n=1, heartbeat_period=0.25, heartbeat_timeout=3.0
                ) as cluster:
                    fuzz: Any = ControllerFuzz(cluster, Path(tmp))
                    started = time.monotonic()
                    try:
                        run_for(fuzz, share, args.round, rng)
                        figures = fuzz.verdict()
                    finally:
                        fuzz.close()
                    report("controller", figures, time.monotonic() - started)
            if "engine" in sides:
                (Path(tmp) / "engine").mkdir()
                fuzz = EngineFuzz(Path(tmp) / "engine")
                started = time.monotonic()
                try:
                    run_for(fuzz, share, args.round, rng)
                    figures = fuzz.verdict()
                finally:
                    fuzz.close()
                report("engine", figures, time.monotonic() - started)
    except Exception:
        traceback.print_exc()
        print(f"FAILED (seed {run_seed}): crashes or disobeyed rules above", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
