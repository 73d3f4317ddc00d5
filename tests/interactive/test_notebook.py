"""A notebook run headless (nbclient, a real IPython kernel) using %px on real engines."""

from __future__ import annotations

import re

import pytest
from helpers import RICH_PER_ENGINE

from multiengine.cluster.cluster import Cluster

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


def _text(outputs: list[dict]) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") == "error":
            parts.append("\n".join(out.get("traceback", [])) + "\n")
        elif "data" in out:
            parts.append(out["data"].get("text/plain", "") + "\n")
    return "".join(parts)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.timeout(180)
def test_notebook_with_px_shows_per_engine_output(cluster: Cluster) -> None:
    cells = [
        "import multiengine\n"
        f"mec = multiengine.MultiEngineClient(cluster_dir={str(cluster.cluster_dir.path)!r})\n"
        "mec.activate()",  # no %load_ext: activate() registers the magics
        "%px value = id * 111",
        "%%px\nprint('engine says', value)\nvalue + 1",
        "mec.pull('value')",
        "%%px\ndef f(x):\n    return 1 / x\n\nf(id - 2)",
        f"%%px -t 0,1\n{RICH_PER_ENGINE}\nRich()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    outputs = [_text(cell.outputs) for cell in nb.cells]
    assert "Parallel execution on engines: all" in outputs[1]
    for engine in range(4):  # live output under the cell, once; then the values
        assert outputs[2].count(f"[stdout:{engine}] engine says {engine * 111}\n") == 1
        assert re.search(rf"^Out\[{engine}:\d+\]: {engine * 111 + 1}$", outputs[2], re.M)
    assert "In [" not in outputs[2] and "<Results List>" not in outputs[2]
    assert outputs[3].strip() == "[0, 111, 222, 333]"
    # the engine's traceback, not multiengine's frames
    (error,) = [o for o in nb.cells[4].outputs if o["output_type"] == "error"]
    assert error["ename"] == "CompositeError"
    text = outputs[4]
    assert "[engine 2] ZeroDivisionError: division by zero" in text
    assert re.search(r'File "<engine-2-input-\d+>", line 4, in <module>', text)
    assert re.search(r'File "<engine-2-input-\d+>", line 2, in f', text)
    assert "multiengine/" not in text and "\x1b[" not in text  # no colours off a terminal
    # a rich value: its HTML, under its Out[ENGINE:N] prompt
    shown = [o for o in nb.cells[5].outputs if o["output_type"] == "display_data"]
    data = [dict(o["data"]) for o in shown]
    for d in data[::2]:
        d["text/plain"] = re.sub(r":\d+\]", ":N]", d["text/plain"])
    assert data == [
        {"text/plain": "Out[0:N]:"},
        {"text/plain": "Rich(0)", "text/html": "<b>engine 0</b>"},
        {"text/plain": "Out[1:N]:"},
        {"text/plain": "Rich(1)", "text/html": "<b>engine 1</b>"},
    ]
