"""What ``--ipython`` costs: plain engines next to engines that run code through IPython.

For each kind, starts a local cluster of one engine and reports the time to start it
(controller and engine registered), then the median round trip of ``execute('pass')``
and of ``execute('x = 1\\nx')`` (a value displayed: IPython's formatter runs).

    python benchmarks/ipython_engine.py                 # 1,000 round trips each
    python benchmarks/ipython_engine.py --calls 50      # a quick look

Run it with nothing else busy (the shared benchmark lock, tests/README.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

import multiengine

VALUE_CODE = "x = 1\nx"


def median_ms(mec: multiengine.MultiEngineClient, code: str, calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        mec.execute(code)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="round trips per figure")
    args = parser.parse_args()
    rows: dict[str, list[str]] = {}
    for ipython in (False, True):
        with multiengine.Cluster(n=1, engine_ipython=ipython) as cluster:
            mec = cluster.multiengine_client()
            mec.live_output = False
            median_ms(mec, "pass", max(1, args.calls // 20))  # warm up
            shown = median_ms(mec, VALUE_CODE, args.calls)
            figures = {
                "cluster start, 1 engine (s)": f"{cluster.start_time or 0:.2f}",
                "execute('pass'), median (ms)": f"{median_ms(mec, 'pass', args.calls):.2f}",
                "execute('x = 1\\nx'), median (ms)": f"{shown:.2f}",
            }
            mec.close()
        for name, value in figures.items():
            rows.setdefault(name, []).append(value)
    print("| | plain engine | --ipython engine |")
    print("|---|---|---|")
    for name, (plain, ipy) in rows.items():
        print(f"| {name} | {plain} | {ipy} |")


if __name__ == "__main__":
    main()
