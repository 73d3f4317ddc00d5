"""A notebook run headless (nbclient, a real IPython kernel) using %px on real engines."""

from __future__ import annotations

import pytest

from multiengine.cluster.cluster import Cluster

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


def _text(outputs: list[dict]) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.timeout(180)
def test_notebook_with_px_shows_per_engine_output(cluster: Cluster) -> None:
    cells = [
        "import multiengine\n"
        f"mec = multiengine.MultiEngineClient(cluster_dir={str(cluster.cluster_dir.path)!r})\n"
        "%load_ext multiengine\n"
        "mec.activate()",
        "%px value = id * 111",
        "%%px\nprint('engine says', value)",
        "mec.pull('value')",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = [_text(cell.outputs) for cell in nb.cells]
    assert "Parallel execution on engines: all" in outputs[1]
    for engine in range(4):  # live output under the cell, and the ResultList as its value
        assert f"[stdout:{engine}] engine says {engine * 111}" in outputs[2]
        assert f"[{engine}] Out[" in outputs[2]
    assert outputs[3].strip() == "[0, 111, 222, 333]"
