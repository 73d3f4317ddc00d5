"""Live output at the client: when to ask for it, and how to show it."""

from __future__ import annotations

import sys

__all__ = ["live_wanted", "print_output"]


def live_wanted(setting: bool | None) -> bool:
    """True, False, or None for automatic: on at an interactive prompt
    (IPython, Jupyter, python -i)."""
    if setting is not None:
        return bool(setting)
    return "IPython" in sys.modules or bool(sys.flags.interactive) or hasattr(sys, "ps1")


def print_output(engine_id: int, name: str, text: str) -> None:
    """Show live output as ``[stdout:0] line`` (stderr to stderr)."""
    stream = sys.stderr if name == "stderr" else sys.stdout
    stream.write("".join(f"[{name}:{engine_id}] {line}\n" for line in text.splitlines()))
    stream.flush()
