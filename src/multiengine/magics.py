"""IPython magics: ``%px``, ``%%px``, ``%autopx``, ``%result`` (``%load_ext multiengine``).

The only module that imports IPython. ``mec.activate()`` makes a MultiEngineClient the
one the magics use (one per IPython session, as in the seed).
"""

from __future__ import annotations

import argparse
from typing import Any

from IPython.core.interactiveshell import ExecutionInfo, ExecutionResult, InteractiveShell
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class

from .client import multiengine as _client

__all__ = ["ParallelMagics", "load_ipython_extension", "NO_CLIENT"]

NO_CLIENT = "Use activate() on a MultiEngineClient object to activate it for magics."


def _px_options(line: str) -> tuple[argparse.Namespace, str]:
    """Split ``%px [-t TARGETS] [--block|--noblock] code`` into options and code."""
    parser = argparse.ArgumentParser(prog="%px", add_help=False)
    parser.add_argument("-t", "--targets")
    parser.add_argument("--block", dest="block", action="store_const", const=True, default=None)
    parser.add_argument("--noblock", dest="block", action="store_const", const=False)
    words = line.split(None, 1)
    options: list[str] = []
    rest = line
    # options come first; the code is everything after them
    while words and words[0].startswith("-"):
        opt = words[0]
        options.append(opt)
        rest = words[1] if len(words) > 1 else ""
        if opt in ("-t", "--targets"):
            value, _, rest = rest.partition(" ")
            options.append(value)
        words = rest.split(None, 1)
    args = parser.parse_args(options)
    return args, rest


def _targets(text: str | None) -> Any:
    if text is None:
        return None
    if text == "all":
        return "all"
    parts = [p for p in text.replace(",", " ").split() if p]
    ids = [int(p) for p in parts]
    return ids[0] if len(ids) == 1 and "," not in text else ids


@magics_class
class ParallelMagics(Magics):
    """The parallel magics, bound to the client ``activate()`` chose."""

    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self.client: Any = None
        self._original_run_cell: Any = None

    # ------------------------------------------------------------ %px, %%px
    @line_cell_magic
    def px(self, line: str, cell: str | None = None) -> Any:
        """Run code on the engines: ``%px code`` or a ``%%px`` cell.

        Options: ``-t/--targets 0,2`` (default: the client's targets), ``--block`` /
        ``--noblock`` (default: the client's block).
        """
        if self.client is None:
            print(NO_CLIENT)
            return None
        opts, code = _px_options(line)
        if cell is not None:
            code = cell
        targets = _targets(opts.targets)
        shown = targets if targets is not None else self.client.targets
        print(f"Parallel execution on engines: {shown}")
        return self._execute(code, targets, opts.block)

    def _execute(self, code: str, targets: Any, block: bool | None) -> Any:
        client = self.client
        try:
            return client.execute(code, targets=targets, block=block)
        except KeyboardInterrupt:  # Ctrl-C at the prompt stops the engines' work too
            client.interrupt(targets)
            raise

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
    """Make ``client`` the one the magics use (``mec.activate()``)."""
    ip = InteractiveShell.instance() if InteractiveShell.initialized() else None
    if ip is None:
        print(_client.MAGICS_NEED_IPYTHON)
        return
    magics = ip.magics_manager.registry.get("ParallelMagics")
    if magics is None:
        print(_client.MAGICS_NOT_LOADED)
        return
    magics.client = client


_client.activate_magics = activate  # mec.activate() calls it; the client never imports us
