"""What the checks on every message cost: signing and verifying a small message, and
the replay check alone (docs/reliability.md, "Hostile input").

    python benchmarks/wire_checks.py

Microseconds per message, best of ``--rounds`` rounds of ``-n`` messages, in this
process (no sockets).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from multiengine.wire.message import ReplayGuard, Signer


def best(rounds: int, n: int, step: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            step()
        times.append((time.perf_counter() - t) / n * 1e6)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-n", type=int, default=100_000)
    args = parser.parse_args()
    signer = Signer(b"k" * 32)
    header = {"t": "submit", "id": 1, "cmd": "execute", "targets": 0}
    content = b"\x80\x05\x95" + b"x" * 40
    sign = best(args.rounds, args.n, lambda: signer.frames(dict(header), content))
    frames = [signer.frames(dict(header), content) for _ in range(args.n * args.rounds)]
    it = iter(frames)
    verify = best(args.rounds, args.n, lambda: signer.parse(next(it)))
    guard = ReplayGuard()
    stamps = iter(signer.parse(f, ReplayGuard()).header for f in frames)
    heads = [next(stamps) for _ in range(args.n * args.rounds)]
    hit = iter(heads)
    check = best(args.rounds, args.n, lambda: guard.check(next(hit)))
    print(f"sign (stamp, msgpack, HMAC):        {sign:.2f} µs per message")
    print(f"verify (HMAC, msgpack, replay):     {verify:.2f} µs per message")
    print(f"  of which the replay check alone:  {check:.2f} µs per message")


if __name__ == "__main__":
    main()
