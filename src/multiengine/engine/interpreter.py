"""Running code in the engine's persistent namespace, as the seed's Interpreter did.

``execute(code)`` splits the code into top-level statements, compiles each in
``'single'`` mode (so a bare expression is displayed) and runs them in order. Unlike
the seed it stops at the first exception (contract decision 7). The result dict has
``number`` and ``input`` always, and ``stdout``, ``stderr`` and ``display`` when they
are not empty; failed commands are kept in the history with a ``traceback``.
``display`` has ``pprint`` and ``repr`` of the value, and ``data``/``metadata`` (a
Jupyter mimebundle) when the value has rich reprs (``_repr_html_`` and the like).
"""

from __future__ import annotations

import ast
import base64
import builtins
import linecache
import os
import sys
import traceback
import types
from pprint import pformat
from typing import Any

from ..wire.protocol import TaskFlags
from ..wire.serialize import rebind_globals
from .output import Captured, Streamer
from .properties import StrictDict

__all__ = ["Interpreter", "HIDDEN_NAMES", "MAX_CODE"]

# The most code execute() takes, in characters. CPython's compiler holds the GIL and
# takes about 1 s and 270 MB per MiB of statements (20 MiB: 31 s and 5 GB), during which
# the engine's heartbeat thread cannot run.
MAX_CODE = 2**20

_OWN_DIR = os.path.dirname(os.path.abspath(__file__))

# Compiled cells kept by their source, so a cell sent again (``execute('pass')`` in a
# loop, the same ``%px`` line on each call) is not parsed and compiled again (the
# interpreter's part of ``execute('pass')``: 12.5 -> 4.6 µs). Only cells whose code objects hold no
# nested ones (no def, lambda, class or comprehension) are kept: their file name, which
# carries the command's number for tracebacks, is set afresh with ``code.replace``.
_COMPILED: dict[str, tuple[types.CodeType, ...]] = {}
_COMPILED_MAX = 256
_COMPILED_SOURCE_MAX = 4096

HIDDEN_NAMES = frozenset(
    [
        "__name__",
        "__builtins__",
        "__doc__",
        "__package__",
        "__loader__",
        "__spec__",
        "_ih",
        "_oh",
        "In",
        "Out",
        "_",
        "__",
        "___",
        "input",
        "raw_input",
    ]
)


class _Display:
    """A displayhook that remembers the last value shown."""

    __slots__ = ("called", "value")

    def __init__(self) -> None:
        self.called = False
        self.value: Any = None

    def __call__(self, value: Any) -> None:
        self.called = True
        self.value = value
        if value is not None:
            builtins._ = value  # type: ignore[attr-defined]


class Interpreter:
    def __init__(self, engine_id: int = -1, mpi: Any = None) -> None:
        self.engine_id = engine_id
        self.mpi = mpi
        self.history: dict[int, dict[str, Any]] = {}
        self.number = 0
        self.namespace: dict[str, Any] = {}
        self.streamer: Streamer | None = None  # set while a command wants live output
        self.properties: dict[Any, Any] = StrictDict()
        self.task_flags: TaskFlags | None = None  # how the last task failed, for the scheduler
        # (stdout, stderr) of the command that runs, when a function it called printed
        self.output: tuple[str, str] | None = None
        # messages this engine dropped unread: unsigned, forged, replayed or stale ones
        self.dropped_messages = 0
        # values a command replaced that take long to free (long lists): let go once
        # its answer is sent, off the caller's wait (Engine._run_command)
        self.retired: list[Any] = []
        self.reset()

    # The namespace is the engine's ``__main__`` module, so classes and functions
    # defined on the engine pickle the way they would in a script.
    def reset(self) -> None:
        module = types.ModuleType("__main__")
        self.namespace = module.__dict__
        self.namespace["__builtins__"] = builtins
        self.namespace["id"] = self.engine_id
        self.namespace["mpi"] = self.mpi
        sys.modules["__main__"] = module
        self.number = 0
        self.history = {}
        self.properties.clear()

    @property
    def id(self) -> int:
        return self.engine_id

    def set_id(self, engine_id: int) -> None:
        self.engine_id = engine_id
        self.namespace["id"] = engine_id

    def lookup(self, key: Any) -> Any:
        """The value of ``key`` in the namespace; NameError when it is not defined."""
        if not isinstance(key, str):
            raise TypeError(f"keys must be strings, not {type(key).__name__}: {key!r}")
        try:
            return self.namespace[key]
        except KeyError:
            raise NameError(f"name '{key}' is not defined") from None

    def push(self, namespace: dict[str, Any]) -> None:
        """Bind each name; functions pushed resolve their globals in this namespace."""
        ns = self.namespace
        for k, v in namespace.items():
            if not isinstance(k, str):
                raise TypeError(f"names must be strings, not {type(k).__name__}: {k!r}")
            ns[k] = rebind_globals(v, ns)

    def keys(self) -> list[str]:
        return [k for k in self.namespace if k not in HIDDEN_NAMES]

    def execute(self, code: str) -> dict[str, Any]:
        if len(code) > MAX_CODE:
            raise ValueError(
                f"the code is {len(code) / 2**20:.1f} MiB; an engine runs at most "
                f"{MAX_CODE / 2**20:g} MiB of code at a time (compiling more holds it for "
                "seconds and takes gigabytes): split it, or push large data as values"
            )
        self.number += 1
        n = self.number
        msg: dict[str, Any] = {"input": {"raw": code, "translated": code}, "number": n}
        self.history[n] = msg
        captured = Captured(self.streamer)
        display = _Display()
        saved_hook, sys.displayhook = sys.displayhook, display
        filename = f"<engine-{self.engine_id}-input-{n}>"
        try:
            with captured:
                source = code.strip() + "\n"
                linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
                for unit in _compile(source, filename):
                    exec(unit, self.namespace)
        except BaseException as e:
            msg["traceback"] = {"plain": format_exception(e)}
            raise
        finally:
            sys.displayhook = saved_hook
            captured.keep(msg)
        if display.value is not None:
            msg["display"] = describe(display.value)
        return msg

    def plain_result(self, result: dict[str, Any]) -> bool:
        """Whether an :meth:`execute` result holds only plain data, known without a look
        through it (the engine then pickles it as it is: ``dumps(plain=True)``):
        everything in it is strings and numbers but a rich display's data and metadata,
        which are what the value's ``_repr_*_`` methods returned."""
        display = result.get("display")
        return display is None or "data" not in display

    def get_result(self, i: int | None = None) -> dict[str, Any]:
        if i is None:
            if not self.history:
                raise IndexError("index None out of range")
            return self.history[self.number]
        try:
            return self.history[i]
        except (KeyError, TypeError):
            raise IndexError(f"index {i} out of range") from None


def _compile(source: str, filename: str) -> tuple[types.CodeType, ...]:
    """The cell's statements compiled one by one in ``single`` mode (so a bare
    expression's value goes to the display hook), as ``filename``."""
    kept = _COMPILED.get(source)
    if kept is not None:
        if len(kept) == 1:  # (most cells: one statement, without a generator's set-up)
            return (kept[0].replace(co_filename=filename),)
        return tuple(c.replace(co_filename=filename) for c in kept)
    try:
        tree = ast.parse(source, filename, "exec")
    except MemoryError as e:
        if e.args:  # a real one
            raise
        # what CPython's parser raises when its stack overflows
        raise RecursionError(
            "the code is nested too deeply for Python's parser (it gave up with MemoryError)"
        ) from None
    units = tuple(compile(ast.Interactive(body=[node]), filename, "single") for node in tree.body)
    if len(source) <= _COMPILED_SOURCE_MAX and not any(
        isinstance(k, types.CodeType) for c in units for k in c.co_consts
    ):
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[source] = units
    return units


# The value's own rich reprs, as IPython's display formatter finds them (without
# IPython): method name -> MIME type. Binary images come back as bytes and are sent
# base64-encoded, as in a Jupyter mimebundle.
_REPR_METHODS = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_latex_", "text/latex"),
    ("_repr_json_", "application/json"),
)


def describe(value: Any) -> dict[str, Any]:
    """The ``display`` entry of a result dict for the value of the last expression:
    ``pprint`` and ``repr`` always, ``data`` (a mimebundle) and ``metadata`` when the
    value has rich reprs. A repr method that raises or returns None is skipped."""
    text = pformat(value)
    shown: dict[str, Any] = {"pprint": text, "repr": repr(value)}
    data: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    bundle = _call_repr(value, "_repr_mimebundle_")
    if isinstance(bundle, tuple) and len(bundle) == 2:
        bundle, extra = bundle
        if isinstance(extra, dict):
            metadata.update(extra)
    if isinstance(bundle, dict):
        data.update({k: v for k, v in bundle.items() if isinstance(k, str)})
    for method, mime in _REPR_METHODS:
        if mime in data:
            continue
        got = _call_repr(value, method)
        if isinstance(got, tuple) and len(got) == 2:  # (data, metadata)
            got, extra = got
            if isinstance(extra, dict):
                metadata[mime] = extra
        if got is None:
            continue
        if isinstance(got, bytes) and mime.startswith("image/") and mime != "image/svg+xml":
            got = base64.b64encode(got).decode("ascii")
        data[mime] = got
    for mime, got in list(data.items()):  # only what survives the trip as plain data
        if isinstance(got, bytes):
            data[mime] = base64.b64encode(got).decode("ascii")
        elif not isinstance(got, (str, dict, list, int, float, bool)):
            del data[mime]
    if data:
        data.setdefault("text/plain", text)
        shown["data"] = data
        shown["metadata"] = metadata
    return shown


def _call_repr(value: Any, method: str) -> Any:
    """``value.method()`` when it is a bound method that works, else None. Looked up on
    the type, as IPython does, so that a class (whose methods are unbound) and objects
    answering every attribute (``__getattr__``) are not asked."""
    if getattr(type(value), method, None) is None:
        return None
    try:
        return getattr(value, method)()
    except Exception:
        return None


def format_exception(e: BaseException) -> str:
    """The traceback of ``e`` without the engine's own frames."""
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_OWN_DIR):
        tb = tb.tb_next
    if isinstance(e, SyntaxError) or tb is None:
        return "".join(traceback.format_exception_only(type(e), e))
    return "".join(traceback.format_exception(type(e), e, tb))
