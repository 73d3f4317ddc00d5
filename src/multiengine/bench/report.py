"""The report of ``multiengine bench``: the results of every system as one Markdown table.

One row per metric (:data:`~multiengine.bench.measure.METRICS`), one column per system,
then the ratio columns (how many times faster multiengine is than each peer) and the
issue's goal for multiengine; notes below the table say which values got fewer samples
than planned, why a system or a measurement failed, and what was left running. The
header line (:func:`environment`) names the machine, versions and load.
"""

from __future__ import annotations

import os
import platform

from .measure import METRICS, Metric, Outcome

__all__ = ["environment", "table"]


def _cell(o: Outcome, m: Metric) -> str:
    if o.unavailable:  # the reason once, in the first row
        why = o.unavailable if len(o.unavailable) <= 40 else o.unavailable[:37] + "..."
        return f"n/a ({why})" if m is METRICS[0] else "n/a"
    v = o.values.get(m.key, "n/a")
    if isinstance(v, str):
        return v if len(v) < 30 else "error (see below)"
    text = f"{v:,.0f}" if m.unit == "items/s" else f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return text + ("*" if m.key in o.short else "")


def _ratio(me: Outcome, peer: Outcome, m: Metric) -> str:
    a, b = me.values.get(m.key), peer.values.get(m.key)
    if (
        me.unavailable
        or peer.unavailable
        or not isinstance(a, float)
        or not isinstance(b, float)
        or not a
        or not b
    ):
        return "-"
    return f"{(a / b if m.higher_is_better else b / a):.2f}x"


def _goal(me: Outcome, m: Metric) -> str:
    if m.goal is None:
        return ""
    v, sign = me.values.get(m.key), (">=" if m.higher_is_better else "<")
    if not isinstance(v, float):
        return f"{sign} {m.goal:g}"
    return f"{sign} {m.goal:g} " + (
        "ok" if (v >= m.goal if m.higher_is_better else v < m.goal) else "MISSED"
    )


def table(outcomes: list[Outcome], n: int) -> str:
    """The results as a Markdown table (the first outcome is multiengine's), then notes."""
    me, peers = outcomes[0], outcomes[1:]
    rows = [
        [
            "metric (unit)",
            *(o.name for o in outcomes),
            *(f"{p.name}/me" for p in peers),
            "goal (issue)",
        ]
    ]
    for m in METRICS:
        rows.append(
            [
                f"{m.label} ({m.unit})",
                *(_cell(o, m) for o in outcomes),
                *(_ratio(me, p, m) for p in peers),
                _goal(me, m),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "| "
        + " | ".join(
            [r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))]
        )
        + " |"
        for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes = [
        f"{n} engine{'s' if n != 1 else ''} per system. "
        "Ratio columns (peer/me) = how many times faster multiengine is: "
        "peer time / multiengine time (for GB/s, items/s: multiengine rate / peer rate). "
        "> 1: multiengine is faster."
    ]
    if any(o.short for o in outcomes):
        notes.append("* fewer samples than planned: that measurement hit its time budget.")
    for o in outcomes:
        if len(o.unavailable) > 40:
            notes.append(f"{o.name}: n/a ({o.unavailable})")
        notes += [
            f"{o.name}, {k}: {v}"
            for k, v in o.values.items()
            if isinstance(v, str) and len(v) >= 30
        ]
        if o.leftovers:
            notes.append(
                f"{o.name}: still running after stop, ended by pid: " + "; ".join(o.leftovers)
            )
    return "\n".join([*lines, "", *notes])


def environment() -> str:
    """The machine, Python and ZeroMQ versions, and the load average (busy machines are noisy)."""
    import zmq

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    busy = " (busy machine: expect noise)" if load > 0.5 * (os.cpu_count() or 1) else ""
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"pyzmq {zmq.__version__}/libzmq {zmq.zmq_version()}; "
        f"1-min load average before the run {load:.2f}{busy}"
    )
