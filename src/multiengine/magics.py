"""IPython magics: ``%px``, ``%%px``, ``%pxresult``, ``%pxconfig``, ``%autopx``,
``%result`` (``%load_ext multiengine``, or just ``mec.activate()`` inside IPython).

The only module that imports IPython. ``mec.activate()`` makes a MultiEngineClient the
one the magics use (one per IPython session, as in the seed).

What ``%px`` shows reads like IPython: what the engines print appears once, live, as
``[stdout:N] ...``; the value of a last bare expression as ``Out[ENGINE:N]: value``
(N the engine's command number; its rich reprs in Jupyter); what the code displayed
(``outputs``, from IPython engines) under ``[output:ENGINE]``; an error as each
engine's own traceback (``CompositeError._render_traceback_``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

from IPython.core import magic_arguments as _ma
from IPython.core.error import UsageError
from IPython.core.interactiveshell import ExecutionInfo, ExecutionResult, InteractiveShell
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.display import publish_display_data

from . import errors
from .client import multiengine as _client
from .client.live import wanted as live_wanted
from .client.results import PendingResult

__all__ = ["ParallelMagics", "load_ipython_extension", "NO_CLIENT", "parse_targets"]

F = TypeVar("F", bound=Callable[..., Any])


def magic_arguments() -> Callable[[F], F]:  # IPython's decorators, typed
    return cast(Callable[[F], F], _ma.magic_arguments())


def argument(*names: str, **options: Any) -> Callable[[F], F]:
    return cast(Callable[[F], F], _ma.argument(*names, **options))


def _parser(magics: Any, name: str) -> Any:
    """The argument parser ``@magic_arguments`` gave the magic ``name``."""
    return getattr(magics, name).parser


NO_CLIENT = "Use activate() on a MultiEngineClient object to activate it for magics."
TARGETS_HELP = "expected 'all', engine ids ('2', '0,2') or a slice of the engine ids ('::2', '1:3')"


def parse_targets(text: str, ids: Any = None) -> Any:
    """A ``-t`` value as client targets: ``all``, ``3``, ``0,2``, or a slice (``::2``,
    ``1:3``) of the sorted engine ids, which ``ids()`` gives when asked. Without
    ``ids`` a slice is only checked (and None returned)."""
    text = text.strip()
    if text == "all":
        return "all"
    if ":" in text:
        parts = text.split(":")
        try:
            if len(parts) > 3:
                raise ValueError
            bounds = [int(p) if p.strip() else None for p in parts]
        except ValueError:
            raise UsageError(f"-t {text!r}: {TARGETS_HELP}") from None
        if ids is None:
            return None
        every = sorted(ids())
        chosen = every[slice(*bounds)]
        if not chosen:
            raise UsageError(f"-t {text!r}: no engine in that slice of the engines {every}")
        return chosen
    try:
        chosen = [int(p) for p in text.replace(",", " ").split()]
    except ValueError:
        raise UsageError(f"-t {text!r}: {TARGETS_HELP}") from None
    if not chosen:
        raise UsageError(f"-t: {TARGETS_HELP}")
    return chosen[0] if len(chosen) == 1 and "," not in text else chosen


def _split_options(parser: argparse.ArgumentParser, line: str) -> tuple[list[str], str]:
    """``%px [options] code``: the option words, and the code after them (as typed).

    A word is an option when the parser knows it; another word starting with ``--`` is
    an error, one starting with a single ``-`` is code (``%px -x``)."""
    words: list[str] = []
    rest = line.strip()
    actions = parser._option_string_actions
    while rest.startswith("-"):
        split = rest.split(None, 1)
        word, after = split[0], (split[1] if len(split) > 1 else "")
        action = actions.get(word.split("=", 1)[0])
        if action is None:
            if word.startswith("--"):
                raise UsageError(f"unknown option {word} (%px? lists them)")
            break
        rest = after
        if action.nargs != 0 and "=" not in word:  # the option's value, which may start
            split = rest.split(None, 1)  # with '-' (-t -1:): joined to its option
            if not split:
                raise UsageError(f"{word} needs a value")
            word = f"{max(action.option_strings, key=len)}={split[0]}"
            rest = split[1] if len(split) > 1 else ""
        words.append(word)
    return words, rest


def _short(e: BaseException) -> BaseException:
    """A multiengine error raised by the client itself (bad targets, no engines, a lost
    controller) shows as one line, not the client's frames."""
    if isinstance(e, errors.KernelError) and not hasattr(e, "_render_traceback_"):
        line = f"{type(e).__name__}: {e}"
        e._render_traceback_ = lambda: [line]  # type: ignore[attr-defined]
    return e


def _on_a_terminal() -> bool:
    return sys.platform != "win32" and bool(getattr(sys.stdout, "isatty", lambda: False)())


@magics_class
class ParallelMagics(Magics):
    """The parallel magics, bound to the client ``activate()`` chose."""

    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self.client: Any = None
        self._original_run_cell: Any = None
        # %pxconfig: None means "the client's own" (mec.targets, mec.block)
        self.targets: str | None = None
        self.block: bool | None = None
        self.verbose = True
        self._last: Any = None  # the last %px's ResultList, PendingResult or error

    # ------------------------------------------------------------ %px, %%px
    @magic_arguments()
    @argument(
        "-t",
        "--targets",
        help="the engines: 'all', ids ('2', '0,2') or a slice of the ids ('::2', '1:3'); "
        "default: %%pxconfig's, else the client's targets",
    )
    @argument(
        "--block",
        dest="block",
        action="store_const",
        const=True,
        default=None,
        help="wait for the engines (default: %%pxconfig's, else the client's block)",
    )
    @argument(
        "--noblock",
        dest="block",
        action="store_const",
        const=False,
        help="do not wait: return a PendingResult (%%pxresult shows it when it is done)",
    )
    @argument("--local", action="store_true", help="also run the code here, after the engines")
    @line_cell_magic
    def px(self, line: str, cell: str | None = None) -> Any:
        """Run code on the engines: ``%px [options] code``, or a ``%%px [options]`` cell.

        What the engines print appears once, live (``[stdout:N] ...``); the value of a
        last bare expression as ``Out[ENGINE:N]: value``; an error as each engine's own
        traceback. A blocking ``%px`` returns None (``%result`` gives the result
        dicts); ``--noblock`` returns the PendingResult.
        """
        if self.client is None:
            print(NO_CLIENT)
            return None
        parser = _parser(self, "px")
        if cell is None:
            words, code = _split_options(parser, line)
            args = parser.parse_args(words)
        else:
            words, extra = _split_options(parser, line)
            if extra.strip():
                raise UsageError(f"%%px takes options on its first line, not {extra!r}")
            args, code = parser.parse_args(words), cell
        targets = self._targets(args.targets)
        block = args.block if args.block is not None else self.block
        return self._px(code, targets, block, local=args.local)

    def _targets(self, text: str | None) -> Any:
        text = text if text is not None else self.targets
        if text is None:
            return None
        return parse_targets(text, self.client.get_ids)

    def _px(self, code: str, targets: Any, block: bool | None, local: bool = False) -> Any:
        client = self.client
        if self.verbose:
            shown = targets if targets is not None else client.targets
            print(f"Parallel execution on engines: {shown}")
        live = live_wanted(client.live_output)
        try:
            result = self._execute(code, targets, block)
        except Exception as e:
            self._last = _short(e)
            raise
        self._last = result
        if isinstance(result, PendingResult):
            if local:
                self.shell.run_cell(code, store_history=False)  # type: ignore[union-attr]
            return result
        self.show(result, streams=not live)
        if local:
            self.shell.run_cell(code, store_history=False)  # type: ignore[union-attr]
        return None

    def _execute(self, code: str, targets: Any, block: bool | None) -> Any:
        client = self.client
        try:
            return client.execute(code, targets=targets, block=block)
        except KeyboardInterrupt:  # Ctrl-C at the prompt stops the engines' work too
            client.interrupt(targets)
            raise

    # ------------------------------------------------------------ showing results
    def show(self, rows: Any, streams: bool = True) -> None:
        """Show result dicts the IPython way, engine by engine: their ``stdout`` and
        ``stderr`` (with ``streams``: they were not shown live), what they displayed
        (``outputs``) and the value of the last expression (``Out[ENGINE:N]``)."""
        shell: Any = self.shell
        active = getattr(getattr(shell, "display_formatter", None), "active_types", None)
        rich = active is None or set(active) != {"text/plain"}  # a terminal: only text
        red, normal = ("\x1b[0;31m", "\x1b[0m") if _on_a_terminal() and not rich else ("", "")
        for row in rows if isinstance(rows, list) else [rows]:
            if not isinstance(row, dict):
                continue
            engine, number = row.get("id", "?"), row.get("number", "?")
            if streams:
                for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
                    text = row.get(name)
                    if text:
                        stream.write("".join(f"[{name}:{engine}] {x}\n" for x in text.splitlines()))
                        stream.flush()
            outputs = row.get("outputs") or []
            if outputs:
                print(f"[output:{engine}]")
                for out in outputs:
                    if isinstance(out, dict) and isinstance(out.get("data"), dict):
                        publish_display_data(out["data"], out.get("metadata") or {})
            failed = row.get("traceback")
            if isinstance(failed, dict) and failed.get("plain"):  # %pxresult of a failure
                sys.stderr.write(f"[engine {engine}] In [{number}] failed:\n{failed['plain']}")
                sys.stderr.flush()
            value = row.get("display")
            if not isinstance(value, dict):
                continue
            prompt = f"{red}Out[{engine}:{number}]:{normal}"
            data = value.get("data")
            metadata = {**(value.get("metadata") or {}), "engine": engine}
            if rich and isinstance(data, dict) and any(k != "text/plain" for k in data):
                publish_display_data({"text/plain": prompt}, {"engine": engine})
                publish_display_data(data, metadata)
            else:
                text = str(value.get("pprint", value.get("repr", "")))
                sep = "\n" if "\n" in text else " "
                publish_display_data({"text/plain": f"{prompt}{sep}{text}"}, metadata)

    # ------------------------------------------------------------ %pxresult
    @magic_arguments()
    @argument(
        "number",
        nargs="?",
        type=int,
        help="the engines' command number (default: the last %%px, else the last command)",
    )
    @line_magic
    def pxresult(self, line: str = "") -> None:
        """Show a result again the way %px does, output included: the last %px's (waiting
        for it when it ran with --noblock), or command NUMBER's on the engines."""
        if self.client is None:
            print(NO_CLIENT)
            return None
        args = _parser(self, "pxresult").parse_argstring(line)
        if args.number is not None:
            rows = self.client.get_result(args.number, targets=self._targets(None))
        elif self._last is None:
            rows = self.client.get_result(targets=self._targets(None))
        elif isinstance(self._last, BaseException):
            raise _short(self._last)
        elif isinstance(self._last, PendingResult):
            try:
                rows = self._last.get_result(block=True)
            except Exception as e:
                self._last = _short(e)
                raise
            self._last = rows
        else:
            rows = self._last
        self.show(rows, streams=True)
        return None

    # ------------------------------------------------------------ %pxconfig
    @magic_arguments()
    @argument("-t", "--targets", help="default targets of %%px ('default': the client's)")
    @argument(
        "--block",
        dest="block",
        action="store_const",
        const=True,
        default=None,
        help="%%px waits for the engines",
    )
    @argument(
        "--noblock",
        dest="block",
        action="store_const",
        const=False,
        help="%%px returns a PendingResult at once",
    )
    @argument(
        "--default-block",
        dest="block",
        action="store_const",
        const="default",
        help="block as the client does (mec.block)",
    )
    @argument(
        "--verbose",
        dest="verbose",
        action="store_const",
        const=True,
        default=None,
        help="print 'Parallel execution on engines: ...' before each %%px (the default)",
    )
    @argument("--quiet", dest="verbose", action="store_const", const=False, help="do not print it")
    @line_magic
    def pxconfig(self, line: str = "") -> None:
        """Set the defaults of %px and %%px, then print them."""
        args = _parser(self, "pxconfig").parse_argstring(line)
        if args.targets is not None:
            if args.targets.strip() == "default":
                self.targets = None
            else:
                parse_targets(args.targets)  # the syntax now; slices are resolved per call
                self.targets = args.targets.strip()
        if args.block is not None:
            self.block = None if args.block == "default" else args.block
        if args.verbose is not None:
            self.verbose = args.verbose
        targets = self.targets if self.targets is not None else "the client's"
        block = self.block if self.block is not None else "the client's"
        verbose = "--verbose" if self.verbose else "--quiet"
        print(f"%px defaults: targets={targets}, block={block}, {verbose}")

    # ------------------------------------------------------------ %result
    @line_magic
    def result(self, line: str = "") -> Any:
        """``%result [i]``: the result of command ``i`` (default: the last) on the engines."""
        if self.client is None:
            print(NO_CLIENT)
            return None
        text = line.strip()
        return self.client.get_result(int(text) if text else None)

    # ------------------------------------------------------------ %autopx
    @line_magic
    def autopx(self, line: str = "") -> None:
        """Toggle: while on, every cell runs on the engines instead of locally."""
        if self._original_run_cell is not None:
            self._disable_autopx()
            return
        if self.client is None:
            print(NO_CLIENT)
            return
        shell: Any = self.shell
        self._original_run_cell = shell.run_cell
        shell.run_cell = self._pxrun_cell
        print("%autopx enabled")

    def _disable_autopx(self) -> None:
        if self._original_run_cell is not None:
            shell: Any = self.shell
            shell.run_cell = self._original_run_cell
            self._original_run_cell = None
            print("%autopx disabled")

    def _pxrun_cell(
        self,
        raw_cell: str,
        store_history: bool = False,
        silent: bool = False,
        shell_futures: bool = True,
        cell_id: Any = None,
        **kwargs: Any,
    ) -> ExecutionResult:
        info = ExecutionInfo(raw_cell, store_history, silent, shell_futures, cell_id)
        result = ExecutionResult(info)
        shell: Any = self.shell
        if store_history:
            shell.history_manager.store_inputs(shell.execution_count, raw_cell, raw_cell)
        stripped = raw_cell.strip()
        if stripped.startswith("%autopx") or "autopx" in stripped.split("(")[0]:
            self._disable_autopx()
            return result
        try:
            compile(
                raw_cell, "<autopx>", "exec"
            )  # a syntax error is shown here, not on the engines
        except SyntaxError as e:
            shell.showsyntaxerror()
            result.error_in_exec = e
            return result
        try:
            value = self._execute(raw_cell, None, None)
        except Exception as e:
            shell.showtraceback()
            result.error_in_exec = e
        else:
            print(repr(value))
            result.result = None
        finally:
            if store_history:
                shell.execution_count += 1
        return result


def load_ipython_extension(ip: InteractiveShell) -> None:
    """``%load_ext multiengine``: register the parallel magics."""
    if ip.magics_manager.registry.get("ParallelMagics") is None:
        ip.register_magics(ParallelMagics(ip))


def activate(client: Any) -> None:
    """Make ``client`` the one the magics use (``mec.activate()``), registering the
    magics first if this IPython has not loaded them yet."""
    ip = InteractiveShell.instance() if InteractiveShell.initialized() else None
    if ip is None:
        print(_client.MAGICS_NEED_IPYTHON)
        return
    load_ipython_extension(ip)
    ip.magics_manager.registry["ParallelMagics"].client = client


_client.activate_magics = activate  # mec.activate() calls it; the client never imports us
