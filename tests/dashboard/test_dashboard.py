"""The web dashboard: a real cluster, a real ``multiengine dashboard`` process, and a
real headless Chromium driven by selenium.

The page lists the engines, shows a task running and then finished (the counts change),
and every request without the token is refused with 403. The browser test saves a
screenshot under its tmp dir; with ``MULTIENGINE_DASHBOARD_SCREENSHOT=path`` set it also
writes it there (``docs/images/dashboard.png`` is made that way).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    HANG,
    Latch,
    call_within,
    kill_pids,
    processes_using,
    run_cli,
    running,
    wait_until,
)

import multiengine
from multiengine.cluster.cluster import Cluster

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

# The page's visible text, shadow roots included (Bokeh draws its widgets in them).
PAGE_TEXT = """
function text(node) {
  let s = '';
  if (node.shadowRoot) s += text(node.shadowRoot);
  for (const c of node.childNodes) {
    if (c.nodeType === 3) s += c.textContent + ' ';
    else if (c.nodeType === 1 && c.tagName !== 'STYLE' && c.tagName !== 'SCRIPT') s += text(c);
  }
  return s;
}
return text(document.body).replace(/\\s+/g, ' ');
"""


def needs_chromium() -> None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        missing = "chromium" if CHROMIUM is None else "chromedriver"
        pytest.skip(
            f"SKIPPED LOUDLY: {missing} is not installed (apt-get install chromium "
            "chromium-driver, as .ci/install-systems.sh does): the dashboard's browser "
            "test cannot run"
        )


@pytest.fixture
def dashboard(
    fresh_cluster: Callable[..., Cluster],
) -> Iterator[tuple[Cluster, str]]:
    """A 2-engine cluster and a ``multiengine dashboard`` process serving it; its URL."""
    cluster = fresh_cluster(2)
    cmd = [sys.executable, "-m", "multiengine", "dashboard"]
    cmd += ["--cluster-dir", str(cluster.cluster_dir.path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = call_within(proc.stdout.readline, message="the dashboard's first line")
        said = r"dashboard of cluster '.*': (http://127\.0\.0\.1:\d+/\?token=\S+)\n"
        m = re.fullmatch(said, line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        url_file = cluster.cluster_dir.path / "dashboard.url"
        assert url_file.read_text().strip() == m.group(1)
        assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
        yield cluster, m.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(HANG)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()
    assert proc.returncode == 0, proc.returncode
    assert not (cluster.cluster_dir.path / "dashboard.url").exists()


@pytest.fixture
def browser() -> Iterator[Any]:
    needs_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,900")
    service = Service(CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver_pid = service.process.pid
    try:
        yield driver
    finally:
        driver.quit()  # ends chromium and its children, then chromedriver
        wait_until(lambda: not running([driver_pid]), message="chromedriver to exit")


def page_text(driver: Any) -> str:
    return str(driver.execute_script(PAGE_TEXT))


def save_screenshot(driver: Any, path: Path, for_docs: bool = False) -> None:
    assert driver.save_screenshot(str(path)), path
    assert path.stat().st_size > 10_000  # a page, not an empty image
    wanted = os.environ.get("MULTIENGINE_DASHBOARD_SCREENSHOT")
    if wanted and for_docs:
        shutil.copyfile(path, wanted)


def test_the_page_shows_the_engines_and_a_task_running_then_finished(
    dashboard: tuple[Cluster, str], browser: Any, latch: Callable[[], Latch], tmp_path: Path
) -> None:
    cluster, url = dashboard
    pids = cluster.engine_pids()
    browser.get(url)
    text = lambda: page_text(browser)  # noqa: E731

    def shows(*words: str) -> Callable[[], bool]:
        return lambda: all(w in text() for w in words)

    wait_until(
        shows("engine pid host state queued memory CPU restarts", "scheduled: 0", "idle"),
        message=lambda: f"the page to list the engines: {text()[:800]}",
    )
    for eid, pid in pids.items():
        assert re.search(rf"\b{eid} {pid} \S+ idle 0\b", text()), text()

    gate = latch()
    with cluster.task_client() as tc:
        done = [tc.run(multiengine.StringTask(f"sum(range({i} * 10**5))")) for i in range(8)]
        tc.barrier(done)
        wait_until(
            shows("succeeded: 8", "pending: 0"),
            message=lambda: f"8 finished tasks: {text()[:800]}",
        )
        tid = tc.run(multiengine.StringTask("# a task the test holds\n" + gate.wait_code))
        wait_until(
            shows("pending: 1", "running StringTask("),
            message=lambda: f"the task to show as running: {text()[:800]}",
        )
        wait_until(
            lambda: len(re.findall(r"\d+\.\d MB", text())) >= 2,
            message=lambda: f"each engine's memory: {text()[:800]}",
        )
        save_screenshot(browser, tmp_path / "dashboard.png", for_docs=True)
        gate.set()
        call_within(lambda: tc.get_task_result(tid, block=True), message="the task")
    wait_until(
        shows("pending: 0", "succeeded: 9"),
        message=lambda: f"the task to show as finished: {text()[:800]}",
    )
    wait_until(lambda: "running" not in text(), message=lambda: f"idle engines: {text()[:800]}")
    save_screenshot(browser, tmp_path / "dashboard-after.png")


def _get(url: str, cookie: str | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=HANG) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def test_requests_without_the_token_are_refused(dashboard: tuple[Cluster, str]) -> None:
    _cluster, url = dashboard
    base, token = url.split("/?token=")
    assert _get(base + "/")[0] == 403
    assert _get(base + "/?token=" + "x" * len(token))[0] == 403
    assert _get(base + "/?token=")[0] == 403
    assert _get(base + "/static/js/bokeh.min.js")[0] == 403
    assert _get(base + "/ws")[0] == 403
    assert _get(base + "/", cookie="multiengine_dashboard_1=" + token)[0] == 403  # other port
    status, headers = _get(url)
    assert status == 200
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert _get(base + "/static/js/bokeh.min.js", cookie=cookie.split(";")[0])[0] == 200


def test_cluster_start_dashboard_writes_the_url_and_removes_it_on_stop(
    multiengine_dir: Path,
) -> None:
    profile = f"dash-{uuid.uuid4().hex[:8]}"
    cdir = multiengine_dir / f"cluster_{profile}"
    learned: set[int] = set()
    try:
        r = run_cli("cluster", "start", "-p", profile, "-n", "1", "--daemon", "--dashboard")
        learned.update(processes_using(cdir))
        assert r.returncode == 0, r.stdout + r.stderr
        m = re.search(
            r"^dashboard: (http://127\.0\.0\.1:\d+/\?token=\S+) \(also in (.+)\)$", r.stdout, re.M
        )
        assert m, r.stdout
        url_file = Path(m.group(2))
        assert url_file == cdir / "dashboard.url"
        assert url_file.read_text().strip() == m.group(1)
        assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
        assert _get(m.group(1))[0] == 200
        assert _get(m.group(1).split("?")[0])[0] == 403
        r = run_cli("cluster", "stop", "-p", profile, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert not url_file.exists()
    finally:
        if running(learned) or processes_using(cdir):
            run_cli("cluster", "stop", "-p", profile, timeout=30)
        kill_pids(set(running(learned)) | set(processes_using(cdir)))


def test_a_bad_port_gives_one_clear_line(cluster: Cluster) -> None:
    r = run_cli("dashboard", "--cluster-dir", str(cluster.cluster_dir.path), "--port", "70000")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--port" in lines[0] and "Traceback" not in r.stderr, r.stderr


def test_bokeh_is_imported_only_when_a_dashboard_starts() -> None:
    code = (
        "import sys, multiengine, multiengine.cluster.cli, multiengine.client.view\n"
        "multiengine.cluster.cli.build_parser()\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('bokeh', 'tornado')], "
        "sorted(m for m in sys.modules if m.startswith(('bokeh', 'tornado')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG)
    assert r.returncode == 0, r.stderr
