"""The value of the last expression as a result dict shows it: ``display`` with
``pprint``/``repr``, and ``data``/``metadata`` (a Jupyter mimebundle) built from the
value's own ``_repr_*_`` methods on a plain engine (no IPython there)."""

from __future__ import annotations

import base64

import multiengine

RICH = """
class Rich:
    def __repr__(self):
        return "Rich()"
    def _repr_html_(self):
        return "<b>rich</b>"
    def _repr_png_(self):
        return b"\\x89PNG-bytes"
    def _repr_latex_(self):
        return None              # "nothing in this format": skipped
    def _repr_markdown_(self):
        raise ValueError("broken")   # a repr that raises: skipped
    def _repr_json_(self):
        return {"a": [1, 2]}, {"expanded": True}

class Bundle:
    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": "<i>b</i>", "text/plain": "B!"}, {"text/html": {"isolated": True}}

class Anything:                      # answers every attribute: asked for none of them
    def __getattr__(self, name):
        return lambda *a: "<nope>"
"""


def test_plain_values_have_no_mimebundle(mec: multiengine.MultiEngineClient) -> None:
    (r,) = mec.execute("{'k': list(range(3))}", targets=0)
    assert r["display"] == {"pprint": "{'k': [0, 1, 2]}", "repr": "{'k': [0, 1, 2]}"}
    mec.execute(RICH, targets=0)
    (r,) = mec.execute("Anything()", targets=0)
    assert set(r["display"]) == {"pprint", "repr"}
    (r,) = mec.execute("Rich", targets=0)  # the class itself is not rich
    assert set(r["display"]) == {"pprint", "repr"}


def test_rich_reprs_make_a_mimebundle(mec: multiengine.MultiEngineClient) -> None:
    mec.execute(RICH, targets=0)
    (r,) = mec.execute("Rich()", targets=0)
    d = r["display"]
    assert d["pprint"] == d["repr"] == "Rich()"
    assert d["data"] == {
        "text/plain": "Rich()",
        "text/html": "<b>rich</b>",
        "image/png": base64.b64encode(b"\x89PNG-bytes").decode(),
        "application/json": {"a": [1, 2]},
    }
    assert d["metadata"] == {"application/json": {"expanded": True}}
    (r,) = mec.execute("Bundle()", targets=0)
    assert r["display"]["data"] == {"text/html": "<i>b</i>", "text/plain": "B!"}
    assert r["display"]["metadata"] == {"text/html": {"isolated": True}}


def test_the_engine_does_not_import_ipython(mec: multiengine.MultiEngineClient) -> None:
    mec.execute(RICH + "Rich()", targets=0)
    assert (
        mec.execute("import sys; 'IPython' in sys.modules", targets=0)[0]["display"]["repr"]
        == "False"
    )


def test_display_data_holding_engine_defined_objects_arrives(
    mec: multiengine.MultiEngineClient,
) -> None:
    """Most result dicts are pickled as they are (strings and numbers only); one whose
    rich display holds objects of a class defined on the engine is looked through and
    pickled by value, so it unpickles on a client that never defined that class."""
    mec.execute(
        "class Point:\n"
        "    def __init__(self, x):\n"
        "        self.x = x\n"
        "class Holder:\n"
        "    def _repr_json_(self):\n"
        "        return {'points': [Point(7)]}, {'by': Point(8)}\n"
    )
    for targets in (0, "all"):  # the direct path and the controller's
        r = mec.execute("Holder()", targets=targets)[0]
        (point,) = r["display"]["data"]["application/json"]["points"]
        assert type(point).__name__ == "Point" and point.x == 7
        assert r["display"]["metadata"]["application/json"]["by"].x == 8
