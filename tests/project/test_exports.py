"""The public surface of multiengine: ``__all__``, docs/api.md and errors.py agree.

httpx-style: ``multiengine.__all__`` is exactly the names docs/api.md lists, each of them
resolves, ``import multiengine`` stays light, and every exception class lives in
``multiengine.errors`` under ``KernelError`` and is exported.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import multiengine
from multiengine import errors

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def section(title: str) -> str:
    """The text of docs/api.md under the ``## title`` heading, up to the next ``## ``."""
    text = API_MD.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def documented_public_names() -> list[str]:
    """The first cell of every row of the table under ``## `multiengine` ``."""
    rows = re.findall(r"^\| `([A-Za-z_][A-Za-z0-9_]*)` \|", section("`multiengine`"), re.M)
    assert rows, "no table rows found in docs/api.md's `multiengine` section"
    return rows


def exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in errors.py (aliases included once, by their name)."""
    return {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if cls.__module__ == errors.__name__ and issubclass(cls, BaseException)
    }


def test_all_equals_the_names_in_docs_api_md():
    assert multiengine.__all__ == sorted(documented_public_names())


def test_every_public_name_resolves_and_is_in_dir():
    listing = dir(multiengine)
    for name in multiengine.__all__:
        assert getattr(multiengine, name) is not None, name
        assert name in listing, name


def test_import_multiengine_imports_neither_zmq_nor_ipython():
    code = (
        "import sys, multiengine\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('zmq', 'IPython')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_errors_all_covers_every_exception_class():
    classes = exception_classes()
    assert len(classes) > 30
    assert sorted(set(classes) - set(errors.__all__)) == []
    for name in errors.__all__:
        assert hasattr(errors, name), name


def test_every_class_in_errors_derives_from_kernel_error():
    for name, cls in inspect.getmembers(errors, inspect.isclass):
        if cls.__module__ == errors.__name__:
            assert issubclass(cls, errors.KernelError), name


def test_every_exception_is_in_the_docstring_tree_and_on_docs_api_md():
    doc_tree = errors.__doc__ or ""
    page = section("`multiengine.errors`")
    for name in exception_classes():
        assert re.search(rf"\b{name}\b", doc_tree), f"{name} missing from errors.py's tree"
        assert re.search(rf"\b{name}\b", page), f"{name} missing from docs/api.md"
    assert "ConnectionError" in page


def test_launch_errors_are_reexported_where_they_were():
    from multiengine.cluster.cluster import ClusterStartError
    from multiengine.cluster.launchers.base import LaunchError

    assert ClusterStartError is errors.ClusterStartError is multiengine.ClusterStartError
    assert LaunchError is errors.LaunchError
    assert issubclass(LaunchError, ClusterStartError)
