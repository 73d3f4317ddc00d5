"""``_repr_html_`` of the clients and of Cluster: the compact table Jupyter shows
(engines with their state, task counts, results kept), escaped, and never an exception."""

from __future__ import annotations

import html

from helpers import Latch, idle, wait_until

import multiengine
from multiengine.cluster.cluster import Cluster


def test_the_clients_and_the_cluster_show_engines_and_task_counts(
    cluster: Cluster, mec: multiengine.MultiEngineClient, tc: multiengine.TaskClient
) -> None:
    for obj, title in ((mec, "MultiEngineClient"), (tc, "TaskClient"), (cluster, "Cluster")):
        page = obj._repr_html_()  # type: ignore[attr-defined]
        assert page.startswith("<div class='multiengine-status'>") and title in page
        assert page.count("<table>") == 2
        for th in ("engine", "state", "queued", "scheduled", "pending", "succeeded", "failed"):
            assert f">{th}</th>" in page, th
        for e in mec.status()["engines"]:
            assert f">{e['pid']}</td>" in page


def test_what_runs_is_shown_escaped(mec: multiengine.MultiEngineClient, latch: object) -> None:
    gate: Latch = latch()  # type: ignore[operator]
    code = "'<b>x</b>'\n" + gate.wait_code
    pr = mec.execute(code, targets=0, block=False)
    wait_until(lambda: mec.status()["engines"][0]["running"], message="engine 0 to run it")
    page = mec._repr_html_()
    assert "<b>x</b>" not in page
    assert html.escape("'<b>x</b>'") in page
    gate.set()
    pr.get_result(block=True)
    wait_until(lambda: idle(mec), message="the engines to be idle")


def test_a_cluster_not_started_says_so() -> None:
    c = Cluster(1)
    page = c._repr_html_()
    assert "not started" in page and "Cluster" in page
