"""A soak: several clients work a cluster for a long time; does anything leak, get lost
or happen twice?

Starts a local cluster, then ``--clients`` client processes (4 by default) that each
run a mix for ``--minutes`` (10 by default): ``execute`` on all engines (each adds one to
a counter of its own on every engine), a non-blocking ``execute`` fetched later,
``push`` then ``pull`` of a list, ``scatter``/``gather``, ``mec.map``, and load-balanced
tasks (each records its token on the engine that runs it). Meanwhile it samples the
resident memory (RSS, /proc) of the controller and of every engine. At the end:

* **lost**: an answer that never came or was wrong, an ``execute`` the engines did not
  count, a task token no engine recorded;
* **duplicated**: an ``execute`` counted more often than sent, a task token recorded
  on engines more than once (no fault is injected: every task runs once).

Both must be 0. The exit status is 1 otherwise. Every task result stays kept until a
client clears it (none does here), so the controller's memory grows up to
``--budget`` (64 MB by default) and results past it go to results.db.

    python benchmarks/soak.py                        # 4 clients, 10 minutes
    python benchmarks/soak.py --minutes 1 --clients 2 --engines 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from collections import Counter
from typing import Any

import multiengine
from multiengine import MapTask


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def record(token: str) -> str:
    """A task: note on this engine that ``token`` ran, and return it."""
    import builtins

    runs = builtins.__dict__.setdefault("_soak_runs", {})
    runs[token] = runs.get(token, 0) + 1
    return token


def client(k: int, cluster_dir: str, seconds: float, out: Any) -> None:
    """One client's loop; puts its counts on ``out`` at the end."""
    counts: Counter[str] = Counter()
    lost: list[str] = []
    mec = multiengine.MultiEngineClient(cluster_dir=cluster_dir, timeout=30)
    tc = multiengine.TaskClient(cluster_dir=cluster_dir, timeout=30)
    ids = mec.get_ids()
    mec.execute(f"soak_{k} = 0")
    deadline = time.monotonic() + seconds
    rounds = 0
    pending: list[tuple[Any, str]] = []
    while time.monotonic() < deadline:
        rounds += 1
        mec.execute(f"soak_{k} += 1")
        counts["execute"] += 1
        pending.append((mec.execute(f"nb_{k} = {rounds}", block=False), f"nb_{k} = {rounds}"))
        data = list(range(rounds % 500, rounds % 500 + 200))
        mec.push({f"data_{k}": data})
        if mec.pull(f"data_{k}") != [data] * len(ids):
            lost.append(f"pull after push in round {rounds}")
        counts["push+pull"] += 1
        mec.scatter(f"part_{k}", list(range(100)))
        if mec.gather(f"part_{k}") != list(range(100)):
            lost.append(f"gather in round {rounds}")
        counts["scatter+gather"] += 1
        if mec.map(abs, range(-50, 50)) != [abs(x) for x in range(-50, 50)]:
            lost.append(f"map in round {rounds}")
        counts["map"] += 1
        tokens = [f"{k}-{rounds}-{i}" for i in range(20)]
        tids = [tc.run(MapTask(record, (t,))) for t in tokens]
        got = [tc.get_task_result(t, block=True) for t in tids]
        if got != tokens:
            lost.append(f"tasks in round {rounds}")
        counts["task"] += len(tokens)
        if len(pending) >= 20:  # fetch the non-blocking ones now and then
            for pr, code in pending:
                if [r["input"]["raw"] for r in pr.get_result(block=True)] != [code] * len(ids):
                    lost.append(f"fetch of {code}")
            counts["non-blocking"] += len(pending)
            pending.clear()
    for pr, code in pending:
        if [r["input"]["raw"] for r in pr.get_result(block=True)] != [code] * len(ids):
            lost.append(f"fetch of {code}")
    counts["non-blocking"] += len(pending)
    executed = mec.pull(f"soak_{k}")
    out.put({"client": k, "counts": dict(counts), "lost": lost, "executed": executed})
    mec.close()
    tc.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--engines", type=int, default=4)
    p.add_argument("--sample", type=float, default=None, help="seconds between RSS samples")
    p.add_argument(
        "--budget",
        default="64MB",
        help="the controller's result_memory_budget: results past it live in results.db "
        "(every task result is kept until cleared, so memory grows to this)",
    )
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    seconds = args.minutes * 60
    sample = args.sample or max(1.0, seconds / 20)
    with multiengine.Cluster(n=args.engines, result_memory_budget=args.budget) as cluster:
        mec = cluster.multiengine_client()
        status = mec.status()
        controller = status["pid"]
        engines = {e["id"]: e["pid"] for e in status["engines"]}
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        procs = [
            ctx.Process(target=client, args=(k, str(cluster.cluster_dir.path), seconds, out))
            for k in range(args.clients)
        ]
        t0 = time.monotonic()
        for proc in procs:
            proc.start()
        samples: list[tuple[float, float, list[float]]] = []
        while any(proc.is_alive() for proc in procs) and out.qsize() < len(procs):
            elapsed = time.monotonic() - t0
            samples.append((elapsed, rss_mb(controller), [rss_mb(p) for p in engines.values()]))
            print(
                f"[{elapsed:7.1f} s] controller {samples[-1][1]:6.1f} MB, engines "
                + " ".join(f"{m:6.1f}" for m in samples[-1][2])
                + " MB",
                flush=True,
            )
            time.sleep(sample)
            if elapsed > seconds + 300:
                print("clients did not finish 5 minutes after the end", file=sys.stderr)
                break
        reports = [out.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(30)
        samples.append(
            (time.monotonic() - t0, rss_mb(controller), [rss_mb(p) for p in engines.values()])
        )
        mec.execute("import builtins; soak = dict(builtins.__dict__.get('_soak_runs', {}))")
        recorded: Counter[str] = Counter()
        for per_engine in mec.pull("soak"):
            recorded.update(per_engine)
        final = mec.status()
    lost = sum(len(r["lost"]) for r in reports)
    duplicated = 0
    for r in reports:
        sent = r["counts"].get("execute", 0)
        for n in r["executed"]:
            lost += max(0, sent - n)
            duplicated += max(0, n - sent)
    tasks = sum(r["counts"].get("task", 0) for r in reports)
    lost += max(0, tasks - len(recorded))
    duplicated += sum(n - 1 for n in recorded.values() if n > 1)
    totals: Counter[str] = Counter()
    for r in reports:
        totals.update(r["counts"])
    first, last = samples[0], samples[-1]
    steady = samples[len(samples) // 4 :]  # after warming up
    figures = {
        "minutes": args.minutes,
        "clients": args.clients,
        "engines": args.engines,
        "result_memory_budget": args.budget,
        "operations": dict(totals),
        "lost": lost,
        "duplicated": duplicated,
        "controller_rss_mb": {
            "start": round(first[1], 1),
            "max": round(max(s[1] for s in samples), 1),
            "end": round(last[1], 1),
            "steady_median": round(statistics.median(s[1] for s in steady), 1),
        },
        "engine_rss_mb": {
            "start": round(max(first[2]), 1),
            "max": round(max(max(s[2]) for s in samples), 1),
            "end": round(max(last[2]), 1),
        },
        "dropped_messages": final.get("dropped_messages"),
        "results_on_disk_at_end": final.get("results_on_disk"),
    }
    for r in reports:
        for what in r["lost"][:5]:
            print(f"client {r['client']}: lost {what}", file=sys.stderr)
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0 if lost == 0 and duplicated == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
