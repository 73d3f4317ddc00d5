"""Live output at the client: when to ask for it, and how to show it."""

from __future__ import annotations

import sys
from typing import Any

from .core import OutputHook

__all__ = ["wanted", "print_output", "LiveOutputSettings"]


def wanted(setting: bool | None, *, on_a_terminal: bool = False) -> bool:
    """Whether to show something extra (live output, progress bars): ``setting`` when it
    is True or False; for None (automatic), on at an interactive prompt (IPython,
    Jupyter, python -i) and, with ``on_a_terminal``, whenever stderr is a terminal."""
    if setting is not None:
        return bool(setting)
    if "IPython" in sys.modules or bool(sys.flags.interactive) or hasattr(sys, "ps1"):
        return True
    return on_a_terminal and bool(getattr(sys.stderr, "isatty", lambda: False)())


def print_output(engine_id: int, name: str, text: str) -> None:
    """Show live output as ``[stdout:0] line`` (stderr to stderr)."""
    stream = sys.stderr if name == "stderr" else sys.stdout
    stream.write("".join(f"[{name}:{engine_id}] {line}\n" for line in text.splitlines()))
    stream.flush()


class LiveOutputSettings:
    """``live_output`` and ``output_hook`` of a client (blocking or asyncio), kept by its
    calls object (``self._calls``), which uses them when it sends."""

    _calls: Any

    @property
    def live_output(self) -> bool | None:
        """Show what engines print while commands, functions and tasks run
        (``[stdout:N] ...``): True, False, or None (the default: on at an interactive
        prompt)."""
        return self._calls.live_output  # type: ignore[no-any-return]

    @live_output.setter
    def live_output(self, value: bool | None) -> None:
        self._calls.live_output = value

    @property
    def output_hook(self) -> OutputHook:
        """``hook(engine_id, name, text)`` that shows live output (runs on the client's
        delivery thread; it may use the client)."""
        return self._calls.output_hook  # type: ignore[no-any-return]

    @output_hook.setter
    def output_hook(self, hook: OutputHook) -> None:
        self._calls.output_hook = hook
