"""Running code through IPython, for engines started with ``--ipython``.

Only that mode imports this module (and so IPython): a plain engine never does. The
:class:`IPythonInterpreter` is an :class:`~.interpreter.Interpreter` whose ``execute``
hands the code to an ``InteractiveShell``, so line and cell magics (``%time``,
``%timeit``, ``%%bash``), ``!cmd`` and top-level ``await`` work, and what the code
displays is kept instead of printed:

- the value of the cell's last bare expression becomes ``display`` (``pprint`` and
  ``repr`` as on a plain engine, plus ``data``, the mimebundle IPython's display
  formatter makes of it, and its ``metadata``);
- every ``display()`` call, and every matplotlib figure still open at the end of the
  cell (matplotlib's inline backend, as in Jupyter), becomes one entry of ``outputs``:
  ``{"data": mimebundle, "metadata": dict}``.

Binary data (``image/png``, ``image/jpeg``, ``application/pdf``) is sent as base64
text, as in a notebook file. The result dict otherwise has the shape of a plain
engine's, so every client feature works unchanged; an error raises the user's
exception with a traceback free of IPython's own frames.
"""

from __future__ import annotations

import base64
import codecs
import os
import re
import selectors
import signal
import subprocess
import sys
import traceback
import types
from typing import Any

import IPython
from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from .interpreter import HIDDEN_NAMES, MAX_CODE, Interpreter, format_exception
from .output import Captured

__all__ = ["IPythonInterpreter", "INLINE_BACKEND"]

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

# frames a traceback does not show: IPython's own, and this module's
_HIDDEN_DIRS = (os.path.dirname(os.path.abspath(IPython.__file__)), os.path.abspath(__file__))
# names IPython's own bookkeeping adds to the namespace: _i, _ii, _iii, _i3, _3, ...
_HISTORY_NAME = re.compile(r"_i{1,3}|_i\d+|_\d+|_dh|_exit_code|__builtin__")


def _jsonable(bundle: dict[str, Any]) -> dict[str, Any]:
    """A mimebundle whose values are text or JSON data: bytes become base64 text."""
    out: dict[str, Any] = {}
    for mime, value in bundle.items():
        if isinstance(value, bytes | bytearray | memoryview):
            value = base64.b64encode(bytes(value)).decode("ascii")
        out[mime] = value
    return out


class _ValueHook(DisplayHook):
    """Keeps the format data of the cell's value instead of writing an ``Out[N]:``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.format_data: tuple[dict[str, Any], dict[str, Any]] | None = None

    def start_displayhook(self) -> None:
        pass

    def write_output_prompt(self) -> None:
        pass

    def write_format_data(
        self, format_dict: dict[str, Any], md_dict: dict[str, Any] | None = None
    ) -> None:
        self.format_data = (format_dict, md_dict or {})

    def finish_displayhook(self) -> None:
        pass


class _Outputs(DisplayPublisher):
    """Keeps what ``display()`` (and matplotlib's inline backend) publishes.

    ``display(..., display_id=True)`` and its handle's ``update()`` replace the entry
    shown under that id; ``clear_output()`` empties the list (``wait=True``: when the
    next output comes), as they change a notebook cell's output area.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outputs: list[dict[str, Any]] = []
        self._where: dict[str, int] = {}  # display id -> its index in outputs
        self._clear_pending = False

    def start(self) -> None:
        """A new command: nothing shown yet."""
        self.outputs = []
        self._where = {}
        self._clear_pending = False

    def publish(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        source: Any = None,
        *,
        transient: Any = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        self._validate_data(data, metadata)
        if self._clear_pending:
            self.start()
        entry = {"data": _jsonable(data), "metadata": dict(metadata or {})}
        display_id = (transient or {}).get("display_id")
        if isinstance(display_id, str) and display_id in self._where:
            self.outputs[self._where[display_id]] = entry
            return
        if update:
            return  # an update of nothing this command showed (an earlier command's)
        if isinstance(display_id, str):
            self._where[display_id] = len(self.outputs)
        self.outputs.append(entry)

    def clear_output(self, wait: bool = False) -> None:
        if wait:
            self._clear_pending = True
        else:
            self.start()


class _EngineShell(InteractiveShell):
    """An InteractiveShell that shows nothing itself: the engine sends it all back."""

    displayhook_class = _ValueHook
    display_pub_class = _Outputs

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.engine_names: dict[str, Any] = {}  # id and mpi: back after a %reset too
        self.reported: list[BaseException] = []  # errors IPython caught and showed
        super().__init__(*args, **kwargs)

    def reset(self, new_session: bool = True, aggressive: bool = False) -> None:
        super().reset(new_session, aggressive)
        self.user_ns.update(self.engine_names)

    def showtraceback(
        self,
        exc_tuple: Any = None,
        filename: Any = None,
        tb_offset: Any = None,
        exception_only: bool = False,
        running_compiled_code: bool = False,
    ) -> None:
        """Kept, not printed: the cell's own error is raised to the engine, which reports
        it; others (a display formatter that failed) go to stderr after the cell."""
        error = exc_tuple[1] if exc_tuple is not None else sys.exc_info()[1]
        if isinstance(error, BaseException):
            self.reported.append(error)

    def _showtraceback(self, etype: Any, evalue: Any, stb: Any) -> None:
        pass  # the engine reports errors itself (with a traceback without IPython)

    def showsyntaxerror(self, *args: Any, **kwargs: Any) -> None:
        pass

    def show_usage_error(self, exc: Any) -> None:
        pass

    def enable_gui(self, gui: str | None = None) -> None:
        """``%matplotlib inline`` needs no event loop; a GUI one cannot run on an engine."""
        if gui not in (None, "inline"):
            raise UsageError(
                f"an engine has no {gui} event loop to show windows in: use "
                "%matplotlib inline (the default), which sends figures back"
            )

    def init_virtualenv(self) -> None:
        pass  # no warning about running outside a virtualenv

    def system_piped(self, cmd: str) -> None:
        """``!cmd``: its output goes to the cell's stdout and stderr as it comes (a
        pseudo-terminal, as IPython uses, would turn every newline into ``\\r\\n``)."""
        if cmd.rstrip().endswith("&"):
            raise OSError("Background processes not supported.")
        exit_code = run_shell_command(self.var_expand(cmd, depth=1))
        self.user_ns["_exit_code"] = exit_code
        if getattr(self, "system_raise_on_error", False) and exit_code != 0:  # (IPython 9)
            raise subprocess.CalledProcessError(exit_code, cmd)

    system = system_piped


def run_shell_command(cmd: str) -> int:
    """Run ``cmd`` with the shell; copy its output to ``sys.stdout``/``sys.stderr`` as it
    comes. Ctrl-C (an engine interrupt) is passed on to the command. Its exit status:
    negative for a signal."""
    proc = subprocess.Popen(
        cmd,
        shell=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        process_group=0,  # so an interrupt reaches what the shell started too
    )
    assert proc.stdout is not None and proc.stderr is not None
    streams = {
        proc.stdout.fileno(): (sys.stdout, codecs.getincrementaldecoder("utf-8")("replace")),
        proc.stderr.fileno(): (sys.stderr, codecs.getincrementaldecoder("utf-8")("replace")),
    }
    with selectors.DefaultSelector() as sel:
        for fd in streams:
            sel.register(fd, selectors.EVENT_READ)
        try:
            while sel.get_map():
                for key, _ in sel.select():
                    fd = int(key.fd)
                    stream, decoder = streams[fd]
                    data = os.read(fd, 65536)
                    if not data:
                        sel.unregister(fd)
                    text = decoder.decode(data, final=not data)
                    if text:
                        stream.write(text)
            return proc.wait()
        except BaseException:  # an interrupt: the command gets it too, then is ended
            for sig in (signal.SIGINT, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(1.0)
                    break
                except subprocess.TimeoutExpired:
                    continue
            raise
        finally:
            proc.stdout.close()
            proc.stderr.close()


def _config() -> Config:
    c = Config()
    c.HistoryManager.enabled = False  # no sqlite file, no saving thread
    c.InteractiveShell.colors = "nocolor"
    c.InteractiveShell.autocall = 0
    c.InteractiveShell.xmode = "Plain"
    return c


class IPythonInterpreter(Interpreter):
    """The engine's namespace, run through IPython (``multiengine engine --ipython``)."""

    def __init__(self, engine_id: int = -1, mpi: Any = None) -> None:
        # matplotlib draws into the cell's outputs (as in Jupyter) unless told otherwise
        os.environ.setdefault("MPLBACKEND", INLINE_BACKEND)
        module = types.ModuleType("__main__")
        self.shell = _EngineShell.instance(config=_config(), user_module=module)
        super().__init__(engine_id, mpi)

    def plain_result(self, result: dict[str, Any]) -> bool:
        return False  # (IPython's formatters made its outputs: looked through when pickled)

    def reset(self) -> None:
        shell = self.shell
        shell.reset(new_session=True)  # (also forgets In, Out and _N)
        _forget_outputs(shell)
        shell.engine_names.update(id=self.engine_id, mpi=self.mpi)
        shell.user_ns.update(shell.engine_names)
        self.namespace = shell.user_ns
        sys.modules["__main__"] = shell.user_module
        self.number = 0
        self.history = {}
        self.properties.clear()

    def set_id(self, engine_id: int) -> None:
        super().set_id(engine_id)
        self.shell.engine_names["id"] = engine_id

    def keys(self) -> list[str]:
        hidden = self.shell.user_ns_hidden
        return [
            k
            for k, v in self.namespace.items()
            if k not in HIDDEN_NAMES
            and not (k in hidden and hidden[k] is v)
            and not _HISTORY_NAME.fullmatch(k)
        ]

    def execute(self, code: str) -> dict[str, Any]:
        """Run ``code`` as one IPython cell; the result dict of a plain engine's execute,
        with ``outputs`` when the cell displayed something."""
        if len(code) > MAX_CODE:
            raise ValueError(
                f"the code is {len(code) / 2**20:.1f} MiB; an engine runs at most "
                f"{MAX_CODE / 2**20:g} MiB of code at a time: split it, or push large data "
                "as values"
            )
        shell = self.shell
        self.number += 1
        n = self.number
        msg: dict[str, Any] = {"input": {"raw": code, "translated": code}, "number": n}
        self.history[n] = msg
        try:  # the Python IPython makes of it: %magics and !cmd become calls
            translated = shell.transform_cell(code)
        except Exception:  # noqa: BLE001 - run_cell reports it (as a SyntaxError)
            translated = code
        if translated.rstrip() != code.rstrip():  # (not just a newline added)
            msg["input"]["translated"] = translated
        hook, pub = shell.displayhook, shell.display_pub
        assert isinstance(hook, _ValueHook) and isinstance(pub, _Outputs)
        hook.format_data = None
        pub.start()
        captured = Captured(self.streamer)
        shell.execution_count = n  # so In[n], Out[n] and _n match the engine's numbers
        shell.reported = []
        try:
            with captured:
                result = shell.run_cell(code, store_history=True)
                error = result.error_before_exec or result.error_in_exec
                for other in shell.reported:
                    if other is not error:
                        captured.err.write(_formatted(other))
                if error is not None:
                    # a magic's wrong usage is a message, not a place in IPython's code
                    tb = None if isinstance(error, UsageError) else error.__traceback__
                    raise error.with_traceback(_without_ipython(tb))
        except BaseException as e:
            msg["traceback"] = {"plain": format_exception(e)}
            raise
        finally:
            captured.keep(msg)
            if pub.outputs:
                msg["outputs"] = pub.outputs
            pub.start()
            _forget_outputs(shell)
        if result.result is not None and hook.format_data is not None:
            data, metadata = hook.format_data
            text = data.get("text/plain")
            try:
                shown = repr(result.result)
            except Exception:  # noqa: BLE001 - IPython's text is shown instead
                shown = text if text is not None else object.__repr__(result.result)
            msg["display"] = {
                "pprint": text if text is not None else shown,
                "repr": shown,
                "data": _jsonable(data),
                "metadata": dict(metadata),
            }
        return msg


def _formatted(e: BaseException) -> str:
    """An error IPython caught and showed (not the cell's), as a traceback for stderr."""
    tb = _without_ipython(e.__traceback__)
    return "".join(traceback.format_exception(type(e), e, tb))


def _forget_outputs(shell: InteractiveShell) -> None:
    """Drop the history's copy of every output (IPython 9 keeps them for ``%notebook``,
    and forever)."""
    outputs = getattr(shell.history_manager, "outputs", None)
    if outputs is not None:
        outputs.clear()


def _without_ipython(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The traceback without IPython's frames (nor ours): the cell's, the user's and
    those of the code a magic ran (``<magic-timeit>``) remain, in order."""
    kept: list[types.TracebackType] = []
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_HIDDEN_DIRS):
            kept.append(tb)
        tb = tb.tb_next
    chain = None
    for t in reversed(kept):
        chain = types.TracebackType(chain, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return chain
