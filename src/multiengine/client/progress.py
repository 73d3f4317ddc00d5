"""Progress bars for long waits: shown only once a wait has lasted ``DELAY`` seconds.

tqdm draws them (``tqdm.auto``: a widget in Jupyter, text in a terminal). A client's
``progress`` attribute switches them: True, False, or None for automatic (on when
stderr is a terminal, at an interactive prompt, or inside IPython/Jupyter).
"""

from __future__ import annotations

import sys
from typing import Any

from .live import wanted

__all__ = ["DELAY", "bar"]

DELAY = 2.0


def bar(
    setting: bool | None, total: int | None, desc: str, unit: str = "task", delay: float = DELAY
) -> Any:
    """A tqdm bar that appears after ``delay`` seconds, or a do-nothing one."""
    if not wanted(setting, on_a_terminal=True):
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency; a broken install just shows no bar
        return _NoBar()
    progress = tqdm(total=total, desc=desc, unit=unit, delay=delay, leave=False, file=sys.stderr)
    if not delay:
        progress.refresh()  # already waited: show it now
    return progress


class _NoBar:
    n = 0  # (tqdm's count)

    def update(self, n: int = 1) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass
