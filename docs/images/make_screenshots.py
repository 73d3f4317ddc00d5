"""Make the notebook screenshots of docs/interactive.md from examples/tour.ipynb.

    PYTHONPATH=src .venv/bin/python docs/images/make_screenshots.py

Runs the tour in a real kernel (nbclient; it starts and stops its own cluster), turns
the executed notebook into HTML (nbconvert: ``pip install -e '.[docs]'``), opens it in
headless Chromium (selenium, Debian's ``chromium`` and ``chromium-driver``) and saves
one picture per cell named below into this folder. The dashboard's picture,
``dashboard.png``, is made by its test (docs/dashboard.md says how).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat
from nbconvert import HTMLExporter
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

HERE = Path(__file__).resolve().parent
TOUR = HERE.parents[1] / "examples" / "tour.ipynb"
# picture name -> how the cell's code starts
CELLS = {
    "px-values.png": "%%px\nimport os",
    "px-error.png": "%px 1 / (id - 1)",
    "px-figures.png": "%%px -t 0,1",
}


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="me-shots-"))
    try:
        nb = nbformat.read(TOUR, as_version=4)
        nbclient.NotebookClient(
            nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(work)}}
        ).execute()
        # only the cells pictured, so that the page is short and carries no token
        keep = [c for c in nb.cells if any(c.source.startswith(s) for s in CELLS.values())]
        nb.cells = keep
        body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
        page = work / "tour.html"
        page.write_text(body)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,2400"):
            options.add_argument(arg)
        service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
        driver = webdriver.Chrome(service=service, options=options)
        try:
            driver.get(page.as_uri())
            cells = driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell")
            for (name, _), cell in zip(sorted(CELLS.items(), key=_order(keep)), cells):
                cell.screenshot(str(HERE / name))
                print("wrote", HERE / name)
        finally:
            driver.quit()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _order(cells: list[nbformat.NotebookNode]):  # type: ignore[no-untyped-def]
    """Sort key: the pictures in the order of their cells in the notebook."""

    def key(item: tuple[str, str]) -> int:
        return next(i for i, c in enumerate(cells) if c.source.startswith(item[1]))

    return key


if __name__ == "__main__":
    sys.exit(main())
