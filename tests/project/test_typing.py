"""A type checker sees the public API as documented: ``block=True`` gives the values,
``block=False`` a PendingResult, and the asyncio clients' coroutines give the same."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

USER_CODE = textwrap.dedent(
    """
    import asyncio
    from typing import Any, assert_type

    import multiengine
    from multiengine import PendingResult, ResultList
    from multiengine.client.calls import Targets

    def blocking(mec: multiengine.MultiEngineClient, tc: multiengine.TaskClient) -> None:
        assert_type(mec.execute("x = 1", block=True), ResultList)
        assert_type(mec.execute("x = 1", block=False), PendingResult[ResultList])
        assert_type(mec.execute("x = 1"), ResultList | PendingResult[ResultList])
        assert_type(mec.pull("x", targets=[0, 1], block=True), list[Any])
        assert_type(mec.push({"a": 1}, block=False), PendingResult[list[None]])
        assert_type(mec.get_ids(), list[int])
        pr = mec.pull("x", block=False)
        assert_type(pr.r, list[Any])
        t: Targets = [0, 2]
        mec.targets = t
        assert_type(tc.map(abs, [-1, 2]), list[Any])

    async def awaited(amec: multiengine.AsyncMultiEngineClient) -> None:
        assert_type(await amec.execute("x = 1", block=True), ResultList)
        pr = await amec.pull("x", block=False)
        assert_type(pr, PendingResult[list[Any]])
        assert_type(await pr, list[Any])
        assert_type(await amec.get_ids(), list[int])

    def wrong(mec: multiengine.MultiEngineClient) -> None:
        mec.execute(42)  # expected: a str of code
    """
)


def test_a_type_checker_knows_what_block_gives(tmp_path: Path) -> None:
    path = tmp_path / "user_code.py"
    path.write_text(USER_CODE)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [ln for ln in result.stdout.splitlines() if "error:" in ln]
    # exactly one error: the deliberate wrong call; every assert_type held
    assert len(lines) == 1, result.stdout
    assert "execute" in lines[0] and '"int"' in lines[0], lines[0]
