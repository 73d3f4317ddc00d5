"""examples/tour.ipynb, run headless in a real kernel (nbclient) as a user runs it.

The notebook starts its own cluster (4 IPython engines) and a dashboard, and stops both
in its last cell. The test adds one cell after the first that writes the pids the
notebook started to a file, so that whatever happens they are ended by pid, and checks
what a reader of each section sees.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("bokeh")

TOUR = Path(__file__).resolve().parents[2] / "examples" / "tour.ipynb"

RECORD_PIDS = """\
import json as _json
_pids = [cluster.controller.pid, *cluster.engine_pids().values()]
open({path!r}, "w").write(_json.dumps(_pids))
"""


def _text(cell: Any) -> str:
    parts = []
    for out in cell.outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") == "error":
            parts.append("\n".join(out.get("traceback", [])))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
            parts.append(out["data"].get("text/markdown", ""))
            parts.append(out["data"].get("text/html", ""))
    return "".join(parts)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for the user
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cell(nb: Any, starts: str) -> Any:
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith(starts):
            return cell
    raise AssertionError(f"no cell starting with {starts!r}")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.timeout(300)
def test_the_tour_runs_and_shows_what_it_says(tmp_path: Path) -> None:
    nb = nbformat.read(TOUR, as_version=4)
    pids_file = tmp_path / "pids.json"
    nb.cells.insert(2, nbformat.v4.new_code_cell(RECORD_PIDS.format(path=str(pids_file))))
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    pids: list[int] = []
    try:
        client.execute()
    finally:
        if pids_file.exists():
            pids = json.loads(pids_file.read_text())
        for pid in pids:  # the last cell stopped them; anything left is ended here
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert pids, "the notebook did not start a cluster"
    wait_until(lambda: not any(_alive(p) for p in pids), timeout=30)

    # the cluster as a table
    assert "<table" in _text(_cell(nb, "import multiengine"))
    # %%px: prints once per engine, values as Out[ENGINE:N], no echo of the code
    px = _text(_cell(nb, "%%px\nimport os"))
    for engine in range(4):
        assert px.count(f"[stdout:{engine}] engine {engine} runs as process") == 1
        assert f"Out[{engine}:" in px and f"]: {engine * 10}" in px
    assert "import numpy" not in px
    # data
    data = _text(_cell(nb, 'mec.scatter("chunk"'))
    assert "all together: 190" in data
    # errors: engine 1's own traceback, none of multiengine's frames
    error = _text(_cell(nb, "%px 1 / (id - 1)"))
    assert "ZeroDivisionError" in error and "[engine 1]" in error
    assert "multiengine/client" not in error and "magics.py" not in error
    # figures from engines 0 and 1
    figures = _cell(nb, "%%px -t 0,1")
    pngs = [o["data"]["image/png"] for o in figures.outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 2
    assert all(base64.b64decode(p).startswith(b"\x89PNG") for p in pngs)
    assert "[output:0]" in _text(figures) and "[output:1]" in _text(figures)
    # tasks with a progress bar that reached its total
    tasks = _text(_cell(nb, "import time"))
    assert "sum of squares: 20540" in tasks
    assert "40/40" in tasks
    # the dashboard link carries its token, and the page was served while the cluster ran
    link = _text(_cell(nb, "from IPython.display import Markdown"))
    assert "http://127.0.0.1:" in link and "token=" in link
    assert _text(_cell(nb, "cubes = tc.map(")).strip().startswith("[0, 1, 8, 27, 64")
    url = link[link.index("http://") :].split(")")[0]
    with pytest.raises(urllib.error.URLError):  # stopped with the cluster
        urllib.request.urlopen(url, timeout=5)
