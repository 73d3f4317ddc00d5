"""Live output at the client: when to ask for it, and how to show it."""

from __future__ import annotations

import sys

__all__ = ["wanted", "print_output"]


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
