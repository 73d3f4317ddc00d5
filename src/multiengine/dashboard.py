"""The live web view of a cluster (``multiengine dashboard``, ``cluster start --dashboard``).

A Bokeh server app run in this process, on a thread of its own, on 127.0.0.1 only. It is
a client of the controller like any other: one poller thread asks ``monitor`` once a
second (docs/protocol.md) and keeps the newest snapshot; every open page redraws from
that snapshot, so ten open tabs cost the controller what one does.

Access needs the dashboard's token: a random string made for each dashboard, in the
URL's query string (``?token=...``). Every HTTP request and the websocket without it get
403. The first page load with the token sets a cookie (HttpOnly, SameSite=Strict, named
for the port) that carries it for the page's scripts and its websocket.

Bokeh is an optional dependency (``pip install multiengine[dashboard]``): this module is
imported only when a dashboard is started.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from .client.multiengine import MultiEngineClient
from .client.view import TASK_STATES, size_text
from .errors import ConfigError
from .runtime import ClusterDir

__all__ = ["Dashboard", "URL_FILE", "check_available"]

URL_FILE = "dashboard.url"  # in the cluster directory, mode 0600: the URL with its token
POLL = 1.0  # seconds between two monitor requests
STREAM_BARS = 2000  # task-stream bars a page keeps
RATE_POINTS = 600  # points of the throughput line (10 minutes at one a second)


def check_available() -> None:
    """Raise :class:`ConfigError` (one clear line) when Bokeh is not installed."""
    try:
        import bokeh  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the dashboard needs Bokeh: pip install 'multiengine[dashboard]'"
        ) from None


class Snapshot:
    """What the poller last heard, in the shape the pages draw: plain lists and dicts."""

    def __init__(self) -> None:
        self.status: dict[str, Any] | None = None
        self.error: str | None = None
        self.usage: dict[int, dict[str, float]] = {}
        self.cpu_percent: dict[int, float] = {}
        self.seq = 0
        # commands and tasks, by the number of their start event:
        # [engine, start, end or None, kind, "what: desc"], oldest first
        self.bars: dict[int, list[Any]] = {}
        self.running: dict[tuple[int, str], int] = {}  # (engine, what) -> its bar
        self.order: deque[int] = deque()
        self.base = 0  # added to event numbers: they start again with a new controller
        self.run: str | None = None  # the controller's run tag
        self.last_done: tuple[float, int] | None = None  # (when, tasks finished then)
        self.rate: deque[tuple[float, float]] = deque(maxlen=RATE_POINTS)  # (time, tasks/s)
        self.version = 0

    def take(self, answer: dict[str, Any], now: float) -> None:
        """Fold a ``monitor`` answer in (the poller holds its lock)."""
        self.status, self.error = answer["status"], None
        for u in answer.get("usage", []):
            eid = u["engine"]
            old = self.usage.get(eid)
            # (an engine restarted under its id starts its CPU time again from 0)
            if old is not None and u["at"] > old["at"] and u["cpu"] >= old["cpu"]:
                self.cpu_percent[eid] = 100 * (u["cpu"] - old["cpu"]) / (u["at"] - old["at"])
            self.usage[eid] = u
        for gone in set(self.usage) - {e["id"] for e in self.status.get("engines", [])}:
            self.usage.pop(gone, None)
            self.cpu_percent.pop(gone, None)
        seq = int(answer.get("seq", 0))
        events = answer.get("events", [])
        if answer.get("run") != self.run and self.run is not None:
            # another controller (it restarted): its events are numbered from 1 again,
            # so these are only some of them; ask for all next time
            for number in self.running.values():
                self.bars[number][2:4] = [now, "lost"]
            self.running.clear()
            self.base = max(self.bars, default=0)
            events, seq = [], 0
        self.run = answer.get("run")
        for n, at, engine, what, kind, desc in events:
            number = self.base + n
            if kind == "start":
                self.bars[number] = [engine, at, None, "running", f"{what}: {desc}"]
                self.running[(engine, what)] = number
                self.order.append(number)
            else:
                started = self.running.pop((engine, what), None)
                if started is not None and started in self.bars:
                    self.bars[started][2:4] = [at, kind]
            while len(self.order) > STREAM_BARS:
                self.bars.pop(self.order.popleft(), None)
        self.seq = seq
        tasks = self.status.get("tasks") or {}
        done = int(tasks.get("succeeded", 0)) + int(tasks.get("failed", 0))
        if self.last_done is not None and now > self.last_done[0]:
            rate = max(0, done - self.last_done[1]) / (now - self.last_done[0])
            self.rate.append((now, rate))
        self.last_done = (now, done)
        self.version += 1


class Poller:
    """One client, one thread: asks ``monitor`` every :data:`POLL` seconds."""

    def __init__(self, cluster_dir: Path, timeout: float = 5.0) -> None:
        self.client = MultiEngineClient(cluster_dir=cluster_dir, timeout=timeout)
        self.snapshot = Snapshot()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="multiengine-dashboard-poll")
        self._thread.daemon = True

    def start(self) -> None:
        self.poll_once()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.client.close()

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            self.poll_once()

    def poll_once(self) -> None:
        try:
            answer = self.client.monitor(self.snapshot.seq)
        except Exception as e:  # the controller gone: say so on the page, and go on asking
            with self.lock:
                self.snapshot.error = f"{type(e).__name__}: {e}"
                self.snapshot.version += 1
            return
        with self.lock:
            self.snapshot.take(answer, time.time())


# ------------------------------------------------------------------ the page
COLORS = {"running": "#f0ad4e", "ok": "#5cb85c", "failed": "#d9534f", "lost": "#7f7f7f"}


def _summary_html(title: str, snap: Snapshot) -> str:
    import html

    st = snap.status
    if st is None:
        return f"<h2>{html.escape(title)}</h2><p>{html.escape(snap.error or 'connecting')}</p>"
    tasks = st.get("tasks") or {}
    rate = snap.rate[-1][1] if snap.rate else 0.0
    counts = "".join(
        f"<span class='count' id='tasks-{s}' style='margin-right:1.5em'>"
        f"{s}: <b>{tasks.get(s, 0)}</b></span>"
        for s in TASK_STATES
    )
    lost = f"<p style='color:#d9534f'>{html.escape(snap.error)}</p>" if snap.error else ""
    return (
        f"<h2 style='margin:0'>{html.escape(title)}</h2>{lost}"
        f"<p>controller pid {st['pid']} on {html.escape(str(st['host']))}, "
        f"up {st['uptime']:.0f} s; <b>{len(st['engines'])}</b> engines</p>"
        f"<p>tasks: {counts} throughput: <b>{rate:.1f}</b>/s</p>"
        f"<p>results held by the controller: {st['results_in_memory']} in memory "
        f"({size_text(st['results_in_memory_bytes'])}), {st['results_on_disk']} on disk "
        f"({size_text(st['results_on_disk_bytes'])}); {st['pending_results']} pending "
        f"results of non-blocking calls ({size_text(st['pending_bytes'])})</p>"
    )


def _engine_rows(snap: Snapshot) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {
        k: [] for k in ("id", "pid", "host", "state", "queue", "memory", "cpu", "restarts")
    }
    st = snap.status or {}
    for e in st.get("engines", []):
        u = snap.usage.get(e["id"])
        cpu = snap.cpu_percent.get(e["id"])
        cols["id"].append(e["id"])
        cols["pid"].append(e["pid"])
        cols["host"].append(e["host"])
        cols["state"].append(f"running {e['running']}" if e["running"] else "idle")
        cols["queue"].append(e["queue"])
        cols["memory"].append(size_text(u["rss"]) if u else "")
        cols["cpu"].append(f"{cpu:.0f} %" if cpu is not None else "")
        cols["restarts"].append(e.get("restarts", 0))
    for e in st.get("down", []):
        for k, v in (
            ("id", e["id"]),
            ("pid", ""),
            ("host", ""),
            ("state", f"down: {e.get('last_exit')}"),
            ("queue", ""),
            ("memory", ""),
            ("cpu", ""),
            ("restarts", e.get("restarts", 0)),
        ):
            cols[k].append(v)
    return cols


ENGINE_COLUMNS = (
    ("id", "engine"),
    ("pid", "pid"),
    ("host", "host"),
    ("state", "state"),
    ("queue", "queued"),
    ("memory", "memory"),
    ("cpu", "CPU"),
    ("restarts", "restarts"),
)


def _engines_html(snap: Snapshot) -> str:
    """The engine table as plain HTML (redrawn whole each second: a few rows)."""
    import html

    cols = _engine_rows(snap)
    head = "".join(f"<th>{title}</th>" for _, title in ENGINE_COLUMNS)
    rows = []
    for i in range(len(cols["id"])):
        cells = "".join(f"<td>{html.escape(str(cols[k][i]))}</td>" for k, _ in ENGINE_COLUMNS)
        rows.append(f"<tr>{cells}</tr>")
    return (
        "<style>table.engines{border-collapse:collapse;width:100%}"
        "table.engines td,table.engines th{text-align:left;padding:3px 10px;"
        "border-bottom:1px solid #ddd}table.engines th{border-bottom:2px solid #999}</style>"
        f"<table class='engines'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _stream_rows(snap: Snapshot, now: float) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {k: [] for k in ("engine", "start", "end", "color", "desc")}
    for number in snap.order:
        bar = snap.bars.get(number)
        if bar is None:
            continue
        engine, start, end, kind, desc = bar
        cols["engine"].append(engine)
        cols["start"].append(start * 1000)  # Bokeh datetimes: ms since the epoch
        cols["end"].append((end if end is not None else now) * 1000)
        cols["color"].append(COLORS.get(kind, "#337ab7"))
        cols["desc"].append(f"{desc} ({kind})")
    return cols


def make_document(doc: Any, poller: Poller, title: str) -> None:
    """Build one page (a Bokeh document) and redraw it every second from the snapshot."""
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, Range1d
    from bokeh.models.widgets import Div
    from bokeh.plotting import figure

    with poller.lock:
        summary = Div(text=_summary_html(title, poller.snapshot), sizing_mode="stretch_width")
        engines = Div(text=_engines_html(poller.snapshot), sizing_mode="stretch_width")
        stream = ColumnDataSource(_stream_rows(poller.snapshot, time.time()))
        rate = ColumnDataSource({"t": [], "rate": []})
    tasks = figure(
        title="task stream: commands and tasks per engine (running, ok, failed, lost)",
        x_axis_type="datetime",
        height=260,
        sizing_mode="stretch_width",
        toolbar_location="right",
        tools="xpan,xwheel_zoom,reset",
        y_range=(y_range := Range1d(start=-0.6, end=0.6)),
    )
    tasks.hbar(y="engine", left="start", right="end", height=0.7, color="color", source=stream)
    tasks.add_tools(HoverTool(tooltips=[("", "@desc")]))
    tasks.yaxis.axis_label = "engine"
    tasks.yaxis.minor_tick_line_color = None
    ticker = FixedTicker(ticks=[0])
    tasks.yaxis.ticker = ticker

    def engine_axis(snap: Snapshot) -> None:
        st = snap.status or {}
        ids = sorted({e["id"] for e in (*st.get("engines", []), *st.get("down", []))})
        if ids and ticker.ticks != ids:
            ticker.ticks = ids
            y_range.start, y_range.end = ids[0] - 0.6, ids[-1] + 0.6

    through = figure(
        title="tasks finished per second",
        x_axis_type="datetime",
        height=180,
        sizing_mode="stretch_width",
        tools="reset",
        toolbar_location=None,
    )
    through.line(x="t", y="rate", source=rate, line_width=2)
    seen = [-1]

    def redraw() -> None:
        with poller.lock:
            snap = poller.snapshot
            if snap.version == seen[0] and not any(b[2] is None for b in snap.bars.values()):
                return
            seen[0] = snap.version
            summary.text = _summary_html(title, snap)
            engines.text = _engines_html(snap)
            engine_axis(snap)
            stream.data = _stream_rows(snap, time.time())
            rate.data = {"t": [t * 1000 for t, _ in snap.rate], "rate": [r for _, r in snap.rate]}

    redraw()
    doc.add_periodic_callback(redraw, 1000)
    doc.title = title
    doc.add_root(column(summary, engines, tasks, through, sizing_mode="stretch_width"))


# ------------------------------------------------------------------ the token
def _guarded(app: Any, token: str, cookie: str) -> None:
    """Make ``app`` (a tornado Application) answer 403 to every request that carries the
    token neither in its query string nor in the cookie; a request that has it in its
    query string gets the cookie."""
    from tornado.web import HTTPError, OutputTransform, RequestHandler

    def has_token(request: Any) -> bool:
        given = parse_qs(request.query).get("token", [""])[0]
        if given and hmac.compare_digest(given, token):
            return True
        from http.cookies import CookieError, SimpleCookie

        try:
            jar: SimpleCookie = SimpleCookie(request.headers.get("Cookie", ""))
        except CookieError:
            return False
        morsel = jar.get(cookie)
        return morsel is not None and hmac.compare_digest(morsel.value, token)

    class Forbidden(RequestHandler):
        def prepare(self) -> None:
            raise HTTPError(403)

    class SetCookie(OutputTransform):
        def __init__(self, request: Any) -> None:
            super().__init__(request)
            given = parse_qs(request.query).get("token", [""])[0]
            self.give = bool(given) and hmac.compare_digest(given, token)

        def transform_first_chunk(
            self, status_code: int, headers: Any, chunk: bytes, finishing: bool
        ) -> tuple[int, Any, bytes]:
            if self.give:
                headers.add("Set-Cookie", f"{cookie}={token}; Path=/; HttpOnly; SameSite=Strict")
            return status_code, headers, chunk

    find = app.find_handler

    def find_handler(request: Any, **kwargs: Any) -> Any:
        if not has_token(request):
            return app.get_handler_delegate(request, Forbidden)
        return find(request, **kwargs)

    app.find_handler = find_handler
    app.transforms.append(SetCookie)


class Dashboard:
    """A dashboard of the cluster in ``cluster_dir``, served on 127.0.0.1:``port``
    (0: a free port) until :meth:`stop`. :attr:`url` carries the token."""

    def __init__(
        self,
        cluster_dir: str | os.PathLike[str],
        port: int = 0,
        title: str | None = None,
        token: str | None = None,
    ) -> None:
        check_available()
        self.cluster_dir = Path(cluster_dir)
        self.requested_port = port
        self.token = token or secrets.token_urlsafe(24)
        self.title = title or f"multiengine: cluster {ClusterDir.find(None, cluster_dir).profile!r}"
        self.port: int | None = None
        self._poller: Poller | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def start(self) -> Dashboard:
        self._poller = Poller(self.cluster_dir)
        self._poller.start()
        self._thread = threading.Thread(target=self._serve, name="multiengine-dashboard")
        self._thread.daemon = True
        self._thread.start()
        self._ready.wait(30)
        if self._failed is not None or self.port is None:
            self.stop()
            why = self._failed or "it did not start within 30 s"
            raise OSError(
                f"the dashboard could not listen on 127.0.0.1:{self.requested_port}: {why}"
            )
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            server = self._make_server()
        except BaseException as e:
            self._failed = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.stop(wait=False)
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()
            self._stopped.set()

    def _make_server(self) -> Any:
        from bokeh.application import Application
        from bokeh.application.handlers.function import FunctionHandler
        from bokeh.server.server import BaseServer
        from bokeh.server.tornado import BokehTornado
        from bokeh.server.util import bind_sockets
        from tornado.httpserver import HTTPServer
        from tornado.ioloop import IOLoop

        poller = self._poller
        assert poller is not None
        sockets, self.port = bind_sockets("127.0.0.1", self.requested_port)
        origins = [f"127.0.0.1:{self.port}", f"localhost:{self.port}"]
        app = Application(FunctionHandler(lambda doc: make_document(doc, poller, self.title)))
        tornado_app = BokehTornado({"/": app}, extra_websocket_origins=origins)
        _guarded(tornado_app, self.token, f"multiengine_dashboard_{self.port}")
        http = HTTPServer(tornado_app, xheaders=False)
        http.add_sockets(sockets)
        server = BaseServer(IOLoop.current(), tornado_app, http)
        server.start()
        return server

    def write_url_file(self, cdir: ClusterDir) -> Path:
        """Write :attr:`url` to ``dashboard.url`` in the cluster directory (mode 0600)."""
        path = cdir.path / URL_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.url + "\n")
        os.chmod(path, 0o600)
        self._url_file = path
        return path

    def wait(self) -> None:
        """Block until the dashboard is stopped (Ctrl-C, SIGTERM or :meth:`stop`)."""
        while not self._stopped.wait(0.2):
            if self._thread is None or not self._thread.is_alive():
                return

    def stop(self) -> None:
        """Stop serving and polling; remove ``dashboard.url`` if this one wrote it."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(10)
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        path = getattr(self, "_url_file", None)
        if path is not None:
            try:
                if path.read_text().strip() == self.url:
                    path.unlink()
            except OSError:
                pass

    def __enter__(self) -> Dashboard:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
