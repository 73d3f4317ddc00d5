"""Engines started with ``--ipython``: code runs through IPython on the engine (magics,
``!cmd``, rich display), and the result dicts keep the plain engine's shape plus the
shared display keys: ``display["data"]``/``display["metadata"]`` for the value, and
``outputs`` for what the code displayed (docs/client.md, result dicts)."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import Latch, assert_remote, call_within
from seed_data import INVALID_COMMANDS, VALID_COMMANDS

import multiengine
from multiengine import Cluster
from multiengine.errors import CompositeError

pytest.importorskip("IPython", reason="--ipython engines need IPython")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ipython_cluster(multiengine_dir: Any) -> Iterator[Cluster]:
    c = Cluster(n=2, engine_ipython=True, heartbeat_period=0.25, heartbeat_timeout=2.0)
    with c:
        yield c
    for p in c.engines:
        assert p.poll() is not None


@pytest.fixture
def imec(ipython_cluster: Cluster) -> Iterator[multiengine.MultiEngineClient]:
    client = ipython_cluster.multiengine_client()
    assert client.get_ids() == [0, 1]
    client.clear_queue()
    client.reset()
    yield client
    client.close()


def without_rich(msg: dict[str, Any]) -> dict[str, Any]:
    """A result dict as a plain engine (before the shared display keys) gives it."""
    msg = dict(msg)
    if "display" in msg:
        msg["display"] = {k: msg["display"][k] for k in ("pprint", "repr")}
    return msg


def first_traceback(e: CompositeError) -> str:
    """The formatted traceback of the first engine's error, as the user sees it."""
    out = io.StringIO()
    e.print_tracebacks(0, file=out)
    return out.getvalue()


def test_the_setting_reaches_every_engine(ipython_cluster: Cluster) -> None:
    assert ipython_cluster.engine_config.ipython
    assert "--ipython" in ipython_cluster._argv("engine", ipython_cluster.engine_config)


def test_plain_python_gives_the_plain_engines_result_dicts(
    imec: multiengine.MultiEngineClient,
) -> None:
    # the seed's commands, in sequence: the same numbers, inputs and displayed values
    for index, (cmd, expected) in enumerate(VALID_COMMANDS):
        got = imec.execute(cmd)
        assert [without_rich(m) for m in got] == [{**expected, "id": i} for i in (0, 1)], index
    assert imec.pull("a") == [5, 5]


@pytest.mark.parametrize("cmd, exc_type", INVALID_COMMANDS, ids=[c for c, _ in INVALID_COMMANDS])
def test_errors_are_the_users_exceptions_without_ipythons_frames(
    imec: multiengine.MultiEngineClient, cmd: str, exc_type: type[BaseException]
) -> None:
    e = assert_remote(exc_type, imec.execute, cmd)
    for text in (first_traceback(e), imec.get_result(targets=0)[0]["traceback"]["plain"]):
        assert "IPython" not in text and "multiengine" not in text, text
    assert imec.execute("ok = 1") and imec.pull("ok") == [1, 1]  # the engines go on


def test_an_error_in_a_function_shows_the_cells_lines(imec: multiengine.MultiEngineClient) -> None:
    e = assert_remote(ZeroDivisionError, imec.execute, "def f(x):\n    return x / 0\n\nf(1)")
    text = first_traceback(e)
    assert "return x / 0" in text and "f(1)" in text
    assert "interactiveshell" not in text


def test_line_magics_run(imec: multiengine.MultiEngineClient) -> None:
    r = imec.execute("%time x = sum(range(1000))")
    assert all("Wall time" in m["stdout"] for m in r)
    assert imec.pull("x") == [499500, 499500]
    r = imec.execute("%timeit -n 2 -r 2 sum(range(100))", targets=0)
    assert "per loop" in r[0]["stdout"]
    assert r[0]["input"]["translated"] == (
        "get_ipython().run_line_magic('timeit', '-n 2 -r 2 sum(range(100))')\n"
    )


def test_an_unknown_magic_is_a_usage_error_with_one_line(
    imec: multiengine.MultiEngineClient,
) -> None:
    from IPython.core.error import UsageError

    e = assert_remote(UsageError, imec.execute, "%nosuchmagic")
    assert first_traceback(e).strip().splitlines()[1:] == [
        "IPython.core.error.UsageError: Line magic function `%nosuchmagic` not found."
    ]


def test_shell_commands_print_to_stdout_and_set_the_exit_code(
    imec: multiengine.MultiEngineClient,
) -> None:
    r = imec.execute("!echo hi; echo oops >&2; exit 3")
    assert [(m["stdout"], m["stderr"]) for m in r] == [("hi\n", "oops\n")] * 2
    assert imec.pull("_exit_code") == [3, 3]
    r = imec.execute("files = !printf 'a\\nb\\n'\nlen(files)", targets=1)
    assert r[0]["display"]["pprint"] == "2"


def test_shell_command_output_streams_live(
    imec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    # the command prints, then waits for a latch that the output hook sets once the
    # line has arrived: it can only end if "!" output reaches the client while it runs
    release = latch()
    events: list[tuple[int, str, str]] = []

    def hook(engine: int, name: str, text: str) -> None:
        events.append((engine, name, text))
        if "".join(t for _, _, t in events) == "first\n":
            release.set()

    imec.live_output = True
    imec.output_hook = hook
    code = f"!echo first; while [ ! -e {release.path} ]; do sleep 0.01; done; echo last"
    r = call_within(lambda: imec.execute(code, targets=0), message="the ! command")
    assert release.is_set()
    assert "".join(t for _, _, t in events) == "first\nlast\n"
    assert r[0]["stdout"] == "first\nlast\n"


def test_an_interrupt_stops_a_shell_command(
    imec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    started = latch()
    pr = imec.execute(f"!touch {started.path}; sleep 60", targets=0, block=False)
    started.wait()
    imec.interrupt(targets=0)
    assert_remote(KeyboardInterrupt, call_within, lambda: pr.get_result(block=True))
    assert imec.execute("!echo again", targets=0)[0]["stdout"] == "again\n"


def test_display_calls_become_outputs(imec: multiengine.MultiEngineClient) -> None:
    code = (
        "from IPython.display import HTML, Markdown, display\n"
        "display(HTML('<b>engine %d</b>' % id))\n"
        "display(Markdown('*md*'), metadata={'note': 1})\n"
        "print('text')"
    )
    r = imec.execute(code)
    for i, m in enumerate(r):
        assert m["stdout"] == "text\n"
        assert "display" not in m
        html, md = m["outputs"]
        assert html["data"]["text/html"] == f"<b>engine {i}</b>"
        assert html["data"]["text/plain"] == "<IPython.core.display.HTML object>"
        assert md["data"]["text/markdown"] == "*md*" and md["metadata"] == {"note": 1}
    # outputs belong to their command: the next one has none
    assert "outputs" not in imec.execute("y = 1", targets=0)[0]
    assert "outputs" in imec.get_result(r[0]["number"], targets=0)[0]


def test_the_value_has_ipythons_mimebundle(imec: multiengine.MultiEngineClient) -> None:
    code = (
        "class Rich:\n"
        "    def _repr_html_(self): return '<p>rich</p>'\n"
        "    def _repr_latex_(self): return r'$x^2$'\n"
        "    def __repr__(self): return 'Rich()'\n"
        "Rich()"
    )
    (m,) = imec.execute(code, targets=0)
    assert m["display"]["pprint"] == m["display"]["repr"] == "Rich()"
    assert m["display"]["data"] == {
        "text/plain": "Rich()",
        "text/html": "<p>rich</p>",
        "text/latex": "$x^2$",
    }
    assert m["display"]["metadata"] == {}
    # a trailing semicolon hides the value, as in IPython
    assert "display" not in imec.execute("Rich();", targets=0)[0]


def test_binary_data_is_base64_text(imec: multiengine.MultiEngineClient) -> None:
    png = PNG_MAGIC + b"\x00rest"
    imec.push({"png": png}, targets=0)
    code = (
        "from IPython.display import Image, display\n"
        "display(Image(data=png, format='png'))\n"
        "Image(data=png, format='png')"
    )
    (m,) = imec.execute(code, targets=0)
    (out,) = m["outputs"]
    for bundle in (out["data"], m["display"]["data"]):
        assert base64.b64decode(bundle["image/png"]) == png


def test_matplotlib_figures_come_back_as_png(imec: multiengine.MultiEngineClient) -> None:
    pytest.importorskip("matplotlib")
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('engine %d' % id)"
    r = imec.execute(code)
    for m in r:
        (fig,) = m["outputs"]  # shown once, at the end of the cell
        assert base64.b64decode(fig["data"]["image/png"]).startswith(PNG_MAGIC)
        assert fig["data"]["text/plain"].startswith("<Figure size")
        assert m["display"]["pprint"].startswith("Text(")  # the title, as in Jupyter
    # the figure was closed after it was shown: the next cell shows nothing
    assert "outputs" not in imec.execute("plt.get_fignums()", targets=0)[0]
    assert imec.execute("plt.get_fignums()", targets=0)[0]["display"]["pprint"] == "[]"


def test_keys_and_reset_hide_ipythons_names(imec: multiengine.MultiEngineClient) -> None:
    imec.execute("a = 1\na\n!true")
    assert imec.keys() == [["id", "mpi", "a"]] * 2
    imec.reset()
    assert imec.keys() == [["id", "mpi"]] * 2
    assert imec.execute("id", targets=1)[0]["number"] == 1
    assert imec.pull("id") == [0, 1]


def test_ipythons_history_names_follow_the_engines_numbers(
    imec: multiengine.MultiEngineClient,
) -> None:
    imec.execute("6 * 7", targets=0)
    imec.execute("y = 1", targets=0)
    (m,) = imec.execute("_1, In[2], Out[1]", targets=0)
    assert m["number"] == 3
    assert m["display"]["pprint"] == "(42, 'y = 1', 42)"


def test_top_level_await_runs(imec: multiengine.MultiEngineClient) -> None:
    (m,) = imec.execute("import asyncio\nawait asyncio.sleep(0)\n'done'", targets=0)
    assert m["display"]["pprint"] == "'done'"


def test_ipython_is_loaded_only_on_ipython_engines(
    imec: multiengine.MultiEngineClient, fresh_cluster: Callable[..., Cluster]
) -> None:
    probe = "import sys\nloaded = sorted({m.split('.')[0] for m in sys.modules} & {'IPython'})"
    imec.execute(probe)
    assert imec.pull("loaded") == [["IPython"]] * 2
    plain = fresh_cluster(1).multiengine_client()
    assert plain.execute(probe) and plain.pull("loaded") == [[]]
    plain.close()


def test_matplotlib_backend_is_inline_unless_the_user_chose_one(
    imec: multiengine.MultiEngineClient,
) -> None:
    imec.execute("import os\nbackend = os.environ.get('MPLBACKEND')", targets=0)
    assert imec.pull("backend", targets=0) == ["module://matplotlib_inline.backend_inline"]


def test_the_namespace_is_the_one_push_pull_and_apply_see(
    imec: multiengine.MultiEngineClient,
) -> None:
    imec.push({"v": 20})
    imec.execute("w = v + id")
    assert imec.pull("w") == [20, 21]
    # a function sent to the engines finds its globals in the shell's namespace
    assert imec.map(lambda i: w + i, [0, 1]) == [20, 22]  # type: ignore[name-defined]  # noqa: F821


def test_a_failing_repr_method_is_skipped_and_reported_on_stderr(
    imec: multiengine.MultiEngineClient,
) -> None:
    code = (
        "class Half:\n"
        "    def _repr_html_(self): raise ValueError('no html today')\n"
        "    def __repr__(self): return 'Half()'\n"
        "Half()"
    )
    (m,) = imec.execute(code, targets=0)
    assert m["display"]["data"] == {"text/plain": "Half()"}
    assert m["stderr"].endswith("ValueError: no html today\n")
    assert "IPython" not in m["stderr"]


def test_ipythons_own_reset_keeps_the_engines_names(imec: multiengine.MultiEngineClient) -> None:
    imec.execute("a = 1\n%reset -f")
    assert imec.keys() == [["id", "mpi"]] * 2
    assert imec.pull("id") == [0, 1]


def test_display_updates_and_clear_output_change_the_outputs(
    imec: multiengine.MultiEngineClient,
) -> None:
    imec.execute("from IPython.display import HTML, clear_output, display", targets=0)
    code = (
        "h = display(HTML('first'), display_id=True)\n"
        "display(HTML('second'))\n"
        "h.update(HTML('first, updated'))"
    )
    (m,) = imec.execute(code, targets=0)
    assert [o["data"]["text/html"] for o in m["outputs"]] == ["first, updated", "second"]
    # an update of an output an earlier command showed adds nothing here
    assert "outputs" not in imec.execute("h.update(HTML('late'))", targets=0)[0]
    code = "display(HTML('gone'))\nclear_output(wait=True)\ndisplay(HTML('kept'))"
    (m,) = imec.execute(code, targets=0)
    assert [o["data"]["text/html"] for o in m["outputs"]] == ["kept"]
    assert "outputs" not in imec.execute("display(HTML('x'))\nclear_output()", targets=0)[0]


def test_matplotlib_magic_inline_works_and_a_gui_is_refused(
    imec: multiengine.MultiEngineClient,
) -> None:
    pytest.importorskip("matplotlib")
    (m,) = imec.execute(
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2]);", targets=0
    )
    assert [sorted(o["data"]) for o in m["outputs"]] == [["image/png", "text/plain"]]
    assert "display" not in m  # (the trailing semicolon)
    from IPython.core.error import UsageError

    e = assert_remote(UsageError, imec.execute, "get_ipython().enable_gui('tk')", targets=0)
    assert "an engine has no tk event loop to show windows in" in str(e.elist[0][1])
    # %gui reports it through logging: the message reaches the command's stderr, once
    (m,) = imec.execute("%gui tk", targets=0)
    assert m["stderr"].count("an engine has no tk event loop to show windows in") == 1
