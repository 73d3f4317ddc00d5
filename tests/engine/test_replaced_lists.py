"""A long list that a push or a scatter replaces is freed once the command's answer has
gone (``Interpreter.retired``: freeing 500k ints took a quarter of an engine's time per
scatter part), and before the next command runs: nothing is kept longer than that."""

from __future__ import annotations

import multiengine
from multiengine.wire import slices

CANARY = """
import builtins

class Canary:
    def __del__(self):
        builtins.canary_freed = builtins.__dict__.get("canary_freed", 0) + 1

x = [Canary()] + list(range({n}))
"""


def test_a_replaced_long_list_is_freed_before_the_next_command(
    mec: multiengine.MultiEngineClient,
) -> None:
    mec.execute(CANARY.format(n=slices.MIN_ITEMS), targets=0)
    ys = list(range(2 * slices.MIN_ITEMS + 10))
    assert mec.scatter("x", ys, targets=[0]) == [None]
    mec.execute(
        "import builtins\nfrom multiengine.engine import get_engine\n"
        "freed = builtins.__dict__.get('canary_freed', 0)\nkept = len(get_engine().retired)",
        targets=0,
    )
    assert mec.pull(["freed", "kept"], targets=0) == [[1, 0]]  # once, and nothing held
    assert mec.pull("x", targets=0) == [ys]
    # a short list replaced is freed as before, at once
    mec.execute(CANARY.format(n=10), targets=0)
    mec.push({"x": [1, 2]}, targets=0)
    mec.execute("import builtins\nfreed = builtins.canary_freed", targets=0)
    assert mec.pull("freed", targets=0) == [2]
