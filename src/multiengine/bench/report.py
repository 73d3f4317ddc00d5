"""The report of ``multiengine bench``: a Markdown table, or the same figures as JSON.

One row per metric (:data:`~multiengine.bench.measure.METRICS`; the ``--many`` rows only
when measured), one column per system, then how many times faster multiengine is than
the best peer on that row, and the issue's goal for multiengine; notes below the table
say which values got fewer samples than planned, why a system or a measurement failed,
and what was left running. The header line (:func:`environment`) names the machine,
versions and load. :func:`as_json` gives, per system and row, the value, unit, number
of samples and the call timed (the method).
"""

from __future__ import annotations

import os
import platform
from typing import Any

from .measure import METRICS, NOT_APPLICABLE, Metric, Outcome

__all__ = ["environment", "table", "as_json", "shown", "best_peer"]


def shown(outcomes: list[Outcome]) -> list[Metric]:
    """The rows of this run: the ``--many`` rows only when they were measured."""
    return [m for m in METRICS if not m.many or outcomes[0].many]


def _label(m: Metric, me: Outcome) -> str:
    return m.label.format(many=me.many)


def _cell(o: Outcome, m: Metric, first: bool) -> str:
    if m.many and m.key not in o.values:  # the --many rows are multiengine's alone
        return NOT_APPLICABLE
    if o.unavailable:  # the reason once, in the first row
        why = o.unavailable if len(o.unavailable) <= 40 else o.unavailable[:37] + "..."
        return f"n/a ({why})" if first else "n/a"
    v = o.values.get(m.key, "n/a")
    if isinstance(v, str):
        return v if len(v) < 30 else "error (see below)"
    text = f"{v:,.0f}" if v >= 1000 else f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return text + ("*" if m.key in o.short else "")


def best_peer(me: Outcome, peers: list[Outcome], m: Metric) -> tuple[str, float] | None:
    """(peer, how many times faster multiengine is than it) for the fastest peer on the row,
    or None when multiengine or every peer has no number there."""
    a = me.values.get(m.key)
    figures = [
        (p.name, v)
        for p in peers
        if not p.unavailable and isinstance(v := p.values.get(m.key), float) and v > 0
    ]
    if me.unavailable or not isinstance(a, float) or a <= 0 or not figures:
        return None
    name, b = (max if m.higher_is_better else min)(figures, key=lambda f: f[1])
    return name, (a / b if m.higher_is_better else b / a)


def _ratio(me: Outcome, peers: list[Outcome], m: Metric) -> str:
    best = best_peer(me, peers, m)
    return "-" if best is None else f"{best[1]:.2f}x ({best[0]})"


def _goal(me: Outcome, m: Metric) -> str:
    if m.goal is None:
        return ""
    sign = ">=" if m.higher_is_better else "<="
    goal: float | None = m.goal
    text = f"{sign} {m.goal:g}"
    if m.relative_to is not None:
        base = me.values.get(m.relative_to)
        goal = m.goal * base if isinstance(base, float) else None
        text = f"{sign} {m.goal:g} x {m.relative_to}"
    v = me.values.get(m.key)
    if not isinstance(v, float) or goal is None:
        return text
    return text + (" ok" if (v >= goal if m.higher_is_better else v <= goal) else " MISSED")


def table(outcomes: list[Outcome], n: int) -> str:
    """The results as a Markdown table (the first outcome is multiengine's), then notes."""
    me, peers = outcomes[0], outcomes[1:]
    header = ["metric (unit)", *(o.name for o in outcomes)]
    if peers:
        header.append("me vs best peer")
    rows = [[*header, "goal (issue)"]]
    for i, m in enumerate(shown(outcomes)):
        rows.append(
            [
                f"{_label(m, me)} ({m.unit})",
                *(_cell(o, m, i == 0) for o in outcomes),
                *([_ratio(me, peers, m)] if peers else []),
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
        f"{n} engine{'s' if n != 1 else ''} per system; medians. "
        "MB/s of a list count 8 bytes per int; 'delivered' counts 80 MB per engine. "
        "— : the system has no such operation (benchmarks/README.md says why)."
    ]
    if peers:
        notes.append(
            "me vs best peer = how many times faster multiengine is than the fastest peer "
            "on the row (peer time / multiengine time; for rates multiengine rate / peer "
            "rate): > 1 multiengine is ahead, < 1 that peer is."
        )
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


def as_json(outcomes: list[Outcome], n: int, **about: Any) -> dict[str, Any]:
    """The figures, machine-readable: per system per row value, unit, samples, method.

    ``value`` is a number, or null with ``note`` saying why (``—``: no such operation;
    ``n/a (not built)``; an error). ``about`` (environment, plan, total time) is copied in.
    """
    me, peers = outcomes[0], outcomes[1:]
    rows = shown(outcomes)
    systems: dict[str, Any] = {}
    for o in outcomes:
        figures: dict[str, Any] = {}
        for m in rows:
            v = o.values.get(m.key)
            figures[m.key] = {
                "value": v if isinstance(v, float) else None,
                "unit": m.unit,
                "samples": o.samples.get(m.key, 0),
                "short": m.key in o.short,
                "method": o.methods.get(m.key, o.methods.get(m.key.removesuffix("_p90"), "")),
                **({"note": v} if isinstance(v, str) else {}),
            }
        systems[o.name] = {
            "version": o.version,
            "unavailable": o.unavailable or None,
            "leftovers": o.leftovers,
            "rows": figures,
        }
    ratios = {}
    for m in rows:
        best = best_peer(me, peers, m)
        ratios[m.key] = None if best is None else {"peer": best[0], "times_faster": best[1]}
    return {
        **about,
        "engines": n,
        "many": me.many or None,
        "rows": [
            {
                "key": m.key,
                "label": _label(m, me),
                "unit": m.unit,
                "higher_is_better": m.higher_is_better,
                "goal": m.goal,
                "goal_relative_to": m.relative_to,
            }
            for m in rows
        ],
        "systems": systems,
        "multiengine_vs_best_peer": ratios if peers else {},
    }


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
