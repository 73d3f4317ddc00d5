"""The compact HTML table Jupyter shows for a cluster or a client (``_repr_html_``),
made from the controller's status map (docs/protocol.md §9). Plain text, escaped; no
script, no style sheet beyond a few inline attributes."""

from __future__ import annotations

import html
from typing import Any

__all__ = ["status_html", "size_text", "TASK_STATES"]

TASK_STATES = ("scheduled", "pending", "succeeded", "failed")


def size_text(n: int | float | None) -> str:
    """Bytes as people read them: 812 B, 3.4 MB, 1.2 GB."""
    if n is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _cell(text: Any, tag: str = "td") -> str:
    return f"<{tag} style='text-align:left'>{html.escape(str(text))}</{tag}>"


def _row(cells: list[Any], tag: str = "td") -> str:
    return "<tr>" + "".join(_cell(c, tag) for c in cells) + "</tr>"


def status_html(title: str, status: dict[str, Any] | None, error: str | None = None) -> str:
    """``title`` over a summary line, the task counts and one row per engine.

    ``status`` None (the controller did not answer) shows ``error`` instead.
    """
    out = [f"<div class='multiengine-status'><b>{html.escape(title)}</b>"]
    if status is None:
        out.append(f"<br><i>{html.escape(error or 'no status')}</i></div>")
        return "".join(out)
    engines = status.get("engines", [])
    tasks = status.get("tasks") or {}
    summary = (
        f"controller pid {status.get('pid')} on {status.get('host')}, "
        f"up {float(status.get('uptime', 0)):.0f} s; {len(engines)} engines; "
        f"results kept: {status.get('results_in_memory', 0)} in memory "
        f"({size_text(status.get('results_in_memory_bytes', 0))}); "
        f"{status.get('pending_results', 0)} pending"
    )
    out.append(f"<br>{html.escape(summary)}")
    out.append("<table><thead>")
    out.append(_row(["tasks", *TASK_STATES], "th"))
    out.append("</thead><tbody>")
    out.append(_row(["", *(tasks.get(s, 0) for s in TASK_STATES)]))
    out.append("</tbody></table>")
    if engines:
        out.append("<table><thead>")
        out.append(_row(["engine", "pid", "host", "state", "queued", "restarts"], "th"))
        out.append("</thead><tbody>")
        for e in engines:
            running = e.get("running")
            state = f"running {running}" if running else "idle"
            out.append(
                _row([e["id"], e["pid"], e["host"], state, e["queue"], e.get("restarts", 0)])
            )
        for e in status.get("down", []):
            out.append(_row([e["id"], "", "", f"down: {e.get('last_exit')}", "", ""]))
        out.append("</tbody></table>")
    out.append("</div>")
    return "".join(out)
