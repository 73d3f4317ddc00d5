"""``multiengine cluster status``: the task counts (tasks sent ahead included) and
``--watch``, which redraws in place on a terminal and prints one block per redraw into
a pipe (``--count`` stops it)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import time

from helpers import HANG, Latch, finish, run_cli, wait_until

import multiengine
from multiengine.cluster.cluster import Cluster


def test_status_shows_task_counts_and_watch_prints_one_block_per_redraw(
    cluster: Cluster, tc: multiengine.TaskClient, latch: object
) -> None:
    gate: Latch = latch()  # type: ignore[operator]
    tid = tc.run(multiengine.StringTask(gate.wait_code))
    wait_until(lambda: tc.queue_status()["pending"] == 1, message="the task to start")
    where = str(cluster.cluster_dir.path)
    r = run_cli("cluster", "status", "--cluster-dir", where, "--watch", "0.05", "--count", "3")
    assert r.returncode == 0, r.stderr
    blocks = r.stdout.strip().split("\n\n")
    assert len(blocks) == 3, r.stdout
    for block in blocks:
        counts = r"^tasks: \d+ scheduled, 1 pending, \d+ succeeded, \d+ failed"
        assert re.search(counts, block, re.M)
        assert "StringTask(" in block and "(every 0.05 s, " in block
    assert "/s finishing)" in blocks[1]  # a rate once there is something to compare with
    gate.set()
    finish(tc, tid)
    r = run_cli("cluster", "status", "--cluster-dir", where)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^tasks: 0 scheduled, 0 pending, [1-9]\d* succeeded", r.stdout, re.M)
    assert "Ctrl-C" not in r.stdout  # without --watch: once, no footer


def test_watch_redraws_in_place_on_a_terminal(cluster: Cluster) -> None:
    master, slave = pty.openpty()
    cmd = [sys.executable, "-m", "multiengine", "cluster", "status"]
    cmd += ["--cluster-dir", str(cluster.cluster_dir.path), "--watch", "0.05", "--count", "2"]
    proc = subprocess.Popen(cmd, stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + HANG
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(HANG) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        if proc.stderr:
            proc.stderr.close()
    text = out.decode(errors="replace")
    assert text.count("\x1b[H\x1b[2J") == 2, text
    assert text.count("tasks: ") == 2


def test_bad_watch_options_give_one_clear_line(cluster: Cluster) -> None:
    where = str(cluster.cluster_dir.path)
    for args, word in ((["--watch", "0"], "--watch"), (["--watch", "--count", "0"], "--count")):
        r = run_cli("cluster", "status", "--cluster-dir", where, *args)
        assert r.returncode == 1, r.stdout
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and word in lines[0] and "Traceback" not in r.stderr, r.stderr
