"""What ``--ipython`` engines display is valid notebook output: in a real kernel
(nbclient), each engine's ``outputs`` and value bundle are published as they came, and
the notebook that results passes nbformat's schema, with the HTML and PNG in it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from multiengine.cluster.cluster import Cluster

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ipython_cluster(multiengine_dir: Path) -> Iterator[Cluster]:
    with Cluster(n=2, engine_ipython=True) as c:
        yield c


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.timeout(180)
def test_engine_displays_are_valid_notebook_outputs(ipython_cluster: Cluster) -> None:
    cells = [
        "import multiengine\n"
        "from IPython.display import publish_display_data\n"
        "mec = multiengine.MultiEngineClient("
        f"cluster_dir={str(ipython_cluster.cluster_dir.path)!r})",
        "r = mec.execute('''\n"
        "from IPython.display import HTML, display\n"
        "import matplotlib.pyplot as plt\n"
        "display(HTML('<b>engine %d</b>' % id))\n"
        "plt.plot([1, 2, 3])\n"
        "HTML('<i>value of engine %d</i>' % id)\n"
        "''')\n"
        "for m in r:\n"
        "    for o in m['outputs']:\n"
        "        publish_display_data(o['data'], o['metadata'])\n"
        "    publish_display_data(m['display']['data'], m['display']['metadata'])",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    nbformat.validate(nb)  # the engines' bundles are what a notebook file may hold
    shown = [o for o in nb.cells[1].outputs if o["output_type"] == "display_data"]
    assert len(shown) == 6, nb.cells[1].outputs  # per engine: HTML, figure, value
    for engine in (0, 1):
        html, figure, value = shown[3 * engine : 3 * engine + 3]
        assert html["data"]["text/html"] == f"<b>engine {engine}</b>"
        assert base64.b64decode(figure["data"]["image/png"]).startswith(PNG_MAGIC)
        assert value["data"]["text/html"] == f"<i>value of engine {engine}</i>"
    again = nbformat.reads(nbformat.writes(nb), as_version=4)  # and it saves as a file
    assert again.cells[1].outputs == nb.cells[1].outputs
