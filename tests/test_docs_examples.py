"""The seed's documented examples (seed-tests §F 1-18, 23, 24) on 4 real engines.

``%px`` in the docs is ``mec.execute`` here, and Python 2's ``print x`` is ``print(x)``.
Where contract.md §5 changed a seed behaviour, the test checks the decision (the
decision's number is in the test name or docstring).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from helpers import plain_repr

import multiengine
from multiengine import PendingResult, ResultList
from multiengine.errors import (
    CompositeError,
    InvalidDeferredID,
    InvalidEngineID,
    InvalidProperty,
    KernelError,
    QueueCleared,
)


def lines(obj: object) -> list[str]:
    return plain_repr(obj).splitlines()


# ---------------------------------------------------------------- §F 1-7: basics and ResultList


def test_f1_get_ids(mec):
    assert mec.get_ids() == [0, 1, 2, 3]
    assert len(mec) == 4


def test_f2_hello_world_result_list(mec):
    rl = mec.execute('print("Hello World")')
    assert isinstance(rl, ResultList)
    assert lines(rl) == [
        "<Results List>",
        '[0] In [1]: print("Hello World")',
        "[0] Out[1]: Hello World",
        '[1] In [1]: print("Hello World")',
        "[1] Out[1]: Hello World",
        '[2] In [1]: print("Hello World")',
        "[2] Out[1]: Hello World",
        '[3] In [1]: print("Hello World")',
        "[3] Out[1]: Hello World",
    ]
    assert str(rl) == plain_repr(rl)


def test_result_list_repr_hides_display_and_shows_stderr(mec):
    rl = mec.execute("1+1")
    assert lines(rl) == ["<Results List>"] + [f"[{i}] In [1]: 1+1" for i in range(4)]
    assert [r["display"]["repr"] for r in rl] == ["2"] * 4
    rl = mec.execute("import sys; sys.stderr.write('oops\\n')", targets=1)
    text = plain_repr(rl)
    assert "[1] In [2]: import sys; sys.stderr.write('oops\\n')" in text
    assert "[1] Err[2]:" in text
    assert "oops" in text


def test_result_list_colours_only_on_a_terminal(mec):
    rl = mec.execute("print(1)", targets=0)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with contextlib.redirect_stdout(Terminal()):
        coloured = repr(rl)
    assert "\x1b[" in coloured
    assert "\x1b[" not in plain_repr(rl)


def test_f3_map_equals_builtin_map(mec):
    assert mec.map(lambda x: x**10, range(32)) == list(map(lambda x: x**10, range(32)))


def test_f4_parallel_decorator(mec):
    @mec.parallel()
    def f(x):
        return 10.0 * x**4

    result = f(range(32))
    assert result[:5] == [0.0, 10.0, 160.0, 810.0, 2560.0]
    assert result == [10.0 * x**4 for x in range(32)]


def test_f5_numbering_counts_executes(mec):
    assert lines(mec.execute("a=5")) == ["<Results List>"] + [
        f"[{i}] In [1]: a=5" for i in range(4)
    ]
    assert lines(mec.execute("b=10")) == ["<Results List>"] + [
        f"[{i}] In [2]: b=10" for i in range(4)
    ]


def test_f6_targets_subsets(mec):
    mec.execute("a=5")
    mec.execute("b=10")
    rl = mec.execute("c=a+b", targets=[0, 2])
    assert lines(rl) == ["<Results List>", "[0] In [3]: c=a+b", "[2] In [3]: c=a+b"]
    rl = mec.execute("c=a-b", targets=[1, 3])
    assert lines(rl) == ["<Results List>", "[1] In [3]: c=a-b", "[3] In [3]: c=a-b"]
    rl = mec.execute("print(c)")
    assert lines(rl) == [
        "<Results List>",
        "[0] In [4]: print(c)",
        "[0] Out[4]: 15",
        "[1] In [4]: print(c)",
        "[1] Out[4]: -5",
        "[2] In [4]: print(c)",
        "[2] Out[4]: 15",
        "[3] In [4]: print(c)",
        "[3] Out[4]: -5",
    ]


def test_f7_result_dicts(mec):
    results = list(mec.execute("d=10; print(d)"))
    assert results == [
        {
            "input": {"translated": "d=10; print(d)", "raw": "d=10; print(d)"},
            "number": 1,
            "id": i,
            "stdout": "10\n",
        }
        for i in range(4)
    ]


# ---------------------------------------------------------------- §F 8-10: non-blocking


def test_f8_pending_result_of_a_running_execute(mec):
    pr = mec.execute("import time; time.sleep(0.5)", block=False)
    assert isinstance(pr, PendingResult)
    assert pr.get_result(block=False) is None
    rl = pr.get_result()
    assert isinstance(rl, ResultList)
    assert lines(rl) == ["<Results List>"] + [
        f"[{i}] In [1]: import time; time.sleep(0.5)" for i in range(4)
    ]
    assert pr.r is rl


def test_f9_barrier_over_a_list_of_pending_results(mec):
    mec.block = False
    pr_list = [mec.execute("import time; time.sleep(0.03)") for _ in range(10)]
    assert all(isinstance(pr, PendingResult) for pr in pr_list)
    assert mec.barrier(pr_list) is None
    assert all(pr.done() for pr in pr_list)
    assert isinstance(pr_list[0].r, ResultList)
    assert [r["number"] for r in pr_list[0].r] == [1, 1, 1, 1]
    assert [r["number"] for r in pr_list[9].r] == [10, 10, 10, 10]


def test_f10_instance_targets_and_block(mec):
    mec.targets = [0, 2]
    mec.block = False
    pr = mec.execute("a=5")
    assert isinstance(pr, PendingResult)
    assert lines(pr.r) == ["<Results List>", "[0] In [1]: a=5", "[2] In [1]: a=5"]
    mec.targets = "all"
    mec.block = True
    rl = mec.execute("b=10; print(b)")
    assert [r["id"] for r in rl] == [0, 1, 2, 3]
    assert [r["stdout"] for r in rl] == ["10\n"] * 4
    # engines 0 and 2 ran a=5 first
    assert lines(rl)[1:] == [
        "[0] In [2]: b=10; print(b)",
        "[0] Out[2]: 10",
        "[1] In [1]: b=10; print(b)",
        "[1] Out[1]: 10",
        "[2] In [2]: b=10; print(b)",
        "[2] Out[2]: 10",
        "[3] In [1]: b=10; print(b)",
        "[3] Out[1]: 10",
    ]


def test_block_and_targets_are_validated(mec):
    with pytest.raises(ValueError):
        mec.execute("a=1", block="yes")
    with pytest.raises(ValueError):
        mec.execute("a=1", targets=1.5)


# ---------------------------------------------------------------- §F 11-17: data movement


def test_f11_push_pull_zip_pull(mec):
    assert mec.push(dict(a=1.03234, b=3453)) == [None, None, None, None]
    assert mec.pull("a") == [1.03234] * 4
    assert mec.pull("b", targets=0) == [3453]
    assert mec.pull(("a", "b")) == [[1.03234, 3453]] * 4
    assert mec.zip_pull(("a", "b")) == [
        (1.03234, 1.03234, 1.03234, 1.03234),
        (3453, 3453, 3453, 3453),
    ]


def test_f12_pushed_string_printed(mec):
    assert mec.push(dict(c="speed")) == [None] * 4
    rl = mec.execute("print(c)")
    assert [r["stdout"] for r in rl] == ["speed\n"] * 4
    assert [ln for ln in lines(rl) if "Out" in ln] == [f"[{i}] Out[1]: speed" for i in range(4)]


def test_f13_nonblocking_pull(mec):
    mec.push(dict(a=1.03234))
    mec.block = False
    pr = mec.pull("a")
    assert isinstance(pr, PendingResult)
    assert pr.r == [1.03234] * 4


def test_f14_push_function(mec):
    def f(x):
        return 2.0 * x**4

    assert mec.push_function(dict(f=f)) == [None] * 4
    mec.execute("y = f(4.0)")
    rl = mec.execute("print(y)")
    assert [r["stdout"] for r in rl] == ["512.0\n"] * 4


def test_f14_push_function_uses_engine_globals(mec):
    """seed testPushFunctionGlobal: a pushed function resolves its globals on the engine."""

    def g(x):
        return globala * x  # noqa: F821 - defined on the engines

    mec.push(dict(globala=99))
    mec.push_function(dict(g=g))
    mec.execute("result = g(10)")
    assert mec.pull("result") == [990] * 4
    with pytest.raises(TypeError):
        mec.push_function(dict(h=5))


def test_f15_dict_interface(mec):
    mec["a"] = ["foo", "bar"]
    assert mec["a"] == [["foo", "bar"]] * 4
    with pytest.raises(TypeError):
        mec[1]


def test_f16_scatter_gather_range(mec):
    assert mec.scatter("a", range(16)) == [None] * 4
    rl = mec.execute("print(a)")
    assert [r["stdout"] for r in rl] == [
        "[0, 1, 2, 3]\n",
        "[4, 5, 6, 7]\n",
        "[8, 9, 10, 11]\n",
        "[12, 13, 14, 15]\n",
    ]
    assert mec.gather("a") == list(range(16))


def test_f17_scatter_compute_gather(mec):
    mec.scatter("x", range(64))
    mec.execute("y = [i**10 for i in x]")
    y = mec.gather("y")
    assert y[:9] == [0, 1, 1024, 59049, 1048576, 9765625, 60466176, 282475249, 1073741824]
    assert y == [i**10 for i in range(64)]


# ---------------------------------------------------------------- §F 18: CompositeError


ZDE_LINES = ["one or more exceptions from call to method: execute"] + [
    f"[{i}:execute]: ZeroDivisionError: division by zero" for i in range(4)
]


def test_f18_composite_error_text(mec):
    with pytest.raises(CompositeError) as exc:
        mec.execute("1/0")
    e = exc.value
    assert isinstance(e, KernelError)
    assert str(e).split("\n") == ZDE_LINES
    assert len(e.elist) == 4
    assert [et for et, _, _ in e.elist] == [ZeroDivisionError] * 4
    assert all(isinstance(ev, ZeroDivisionError) for _, ev, _ in e.elist)


def test_f18_raise_exception(mec):
    with pytest.raises(CompositeError) as exc:
        mec.execute("1/0")
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        exc.value.raise_exception()
    with pytest.raises(ZeroDivisionError):
        exc.value.raise_exception(3)
    with pytest.raises(IndexError, match="an exception with index 4 does not exist"):
        exc.value.raise_exception(4)


def test_f18_print_tracebacks(mec, capsys):
    with pytest.raises(CompositeError) as exc:
        mec.execute("1/0")
    capsys.readouterr()
    exc.value.print_tracebacks()
    out = capsys.readouterr().out.splitlines()
    headers = [n for n, ln in enumerate(out) if ln.startswith("[") and ":execute]: " in ln]
    assert [out[n] for n in headers] == [f"[{i}:execute]: " for i in range(4)]
    for k, start in enumerate(headers):
        end = headers[k + 1] if k + 1 < len(headers) else len(out)
        block = "\n".join(out[start + 1 : end])
        assert "Traceback" in block
        assert "1/0" in block
        assert "ZeroDivisionError: division by zero" in block

    exc.value.print_tracebacks(2)
    out = capsys.readouterr().out
    assert out.startswith("[2:execute]: \n")
    assert "ZeroDivisionError" in out
    assert "[0:execute]" not in out and "[3:execute]" not in out
    with pytest.raises(IndexError):
        exc.value.print_tracebacks(7)


def test_f18_nonblocking_composite_error(mec):
    pr = mec.execute("1/0", block=False)
    with pytest.raises(CompositeError) as exc:
        pr.get_result()
    assert str(exc.value).split("\n") == ZDE_LINES


def test_composite_error_holds_only_the_failures(mec):
    with pytest.raises(CompositeError) as exc:
        mec.execute("x = 1 / id")  # only engine 0 divides by zero
    assert str(exc.value).split("\n") == [
        "one or more exceptions from call to method: execute",
        "[0:execute]: ZeroDivisionError: division by zero",
    ]
    assert mec.pull("x", targets=[1, 2, 3]) == [1.0, 0.5, 0.3333333333333333]


# ---------------------------------------------------------------- §F 23: multiengine1.ipy


def test_f23_invalid_engine_id_is_raised_directly(mec):
    with pytest.raises(InvalidEngineID):
        mec.execute("b = 10", targets=-1)
    with pytest.raises(InvalidEngineID):
        mec.execute("b = 10", targets=[0, 10])
    with pytest.raises(InvalidEngineID):
        mec.pull("b", targets="foo")
    # nothing ran on the valid target of the rejected call
    assert mec.keys(targets=0) == [["id", "mpi"]]


def test_f23_execute_with_error_raises_composite_error(mec):
    with pytest.raises(CompositeError) as exc:
        mec.execute("a=5; 1/0")
    assert [et for et, _, _ in exc.value.elist] == [ZeroDivisionError] * 4
    assert mec.pull("a") == [5] * 4  # the statement before the error did run


def test_f23_reset_then_get_result_is_index_error(mec):
    mec.execute("a = 1")
    mec.reset()
    with pytest.raises(CompositeError) as exc:
        mec.get_result()
    assert [et for et, _, _ in exc.value.elist] == [IndexError] * 4
    with pytest.raises(IndexError):
        exc.value.raise_exception()
    assert str(exc.value).split("\n")[1] == "[0:get_result]: IndexError: index None out of range"


def test_f23_clear_queue_clears_queued_commands(mec, latch):
    gate = latch()  # the first command runs until the queue behind it is cleared
    prs = [mec.execute(gate.wait_code, block=False)]
    prs += [mec.execute("import time; time.sleep(0.3)", block=False) for _ in range(4)]
    assert mec.clear_queue() == [None] * 4
    gate.set()
    mec.barrier(prs)
    assert [r["id"] for r in prs[0].r] == [0, 1, 2, 3]  # the running one completed
    for pr in prs[1:]:
        with pytest.raises(CompositeError) as exc:
            pr.get_result()
        assert len(exc.value.elist) == 4
        assert [et for et, _, _ in exc.value.elist] == [QueueCleared] * 4
        assert all(
            ln.startswith("[Engine Exception]QueueCleared") for ln in str(exc.value).split("\n")[1:]
        )
    # only the first command ran: numbering counts executed commands
    assert [r["number"] for r in mec.execute("pass")] == [2, 2, 2, 2]


def test_f23_cached_reraise(mec):
    pr = mec.execute("1/0", block=False)
    with pytest.raises(CompositeError) as first:
        _ = pr.r
    with pytest.raises(CompositeError) as second:
        _ = pr.r
    assert first.value is second.value


def test_f23_flush(mec):
    pd1 = mec.execute("a=30", block=False)
    pd2 = mec.pull("a", block=False)
    pd3 = mec.push(dict(b=1), block=False)
    mec.flush()
    for pd in (pd1, pd2, pd3):
        with pytest.raises(InvalidDeferredID):
            pd.get_result()


# ---------------------------------------------------------------- §F 24: docstring doctests


def test_f24_result_ns():
    if not hasattr(multiengine, "ResultNS"):
        pytest.skip("multiengine.ResultNS does not exist yet")
    ns = multiengine.ResultNS({"a": 17, "foo": list(range(3))})
    assert repr(ns) == "NS{'a': 17, 'foo': [0, 1, 2]}"
    assert ns.a == 17
    assert ns["foo"] == [0, 1, 2]


def test_f24_strict_dict_copies_values():
    from multiengine.engine.commands import StrictDict

    p = StrictDict()
    L = [0, 1]
    p["L"] = L
    L.append(2)
    assert p["L"] == [0, 1]
    p[1] = list(range(2))
    p[1].append(2)
    assert p[1] == [0, 1]
    with pytest.raises(InvalidProperty):
        p["a"] = lambda _: None
    assert "a" not in p


# ---------------------------------------------------------------- contract §5 decisions


def test_decision3_map_with_fewer_items_than_engines(mec):
    assert mec.map(lambda x: 2 * x, range(2)) == [0, 2]
    assert mec.map(lambda x: 2 * x, []) == []


def test_decision4_map_follows_client_targets_and_block(mec):
    assert mec.map(lambda x: (id, x), range(4)) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    mec.targets = [0, 2]
    assert mec.map(lambda x: (id, x), range(4)) == [(0, 0), (0, 1), (2, 2), (2, 3)]
    mec.block = False
    pr = mec.map(lambda x: (id, x), range(4))
    assert isinstance(pr, PendingResult)
    assert pr.r == [(0, 0), (0, 1), (2, 2), (2, 3)]


def test_decision4_parallel_reads_targets_at_call_time(mec):
    @mec.parallel()
    def where(x):
        return (id, x)  # id is the engine's id there

    assert where(range(4)) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    mec.targets = [1, 3]
    assert where(range(4)) == [(1, 0), (1, 1), (3, 2), (3, 3)]
    mec.block = False
    pr = where(range(2))
    assert isinstance(pr, PendingResult)
    assert pr.r == [(1, 0), (3, 1)]

    @mec.parallel(targets=[2])
    def fixed(x):
        return (id, x)

    mec.targets = "all"
    mec.block = True
    assert fixed(range(3)) == [(2, 0), (2, 1), (2, 2)]


def test_decision4_mapper_attributes(mec):
    m = mec.mapper()
    assert m.multiengine is mec
    assert (m.dist, m.targets, m.block) == ("b", "all", True)
    assert m.map(lambda x: 2 * x, range(10)) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    pr = mec.mapper(block=False).map(lambda x: 2 * x, range(10))
    assert pr.r == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]


def test_map_failure_is_composite_error(mec):
    with pytest.raises(CompositeError) as exc:
        mec.map(lambda x: 1 / 0, range(10))
    with pytest.raises(ZeroDivisionError):
        exc.value.raise_exception()


def test_decision5_pull_list_of_one_key(mec):
    mec.push(dict(a=1, b=2))
    assert mec.pull(["a"]) == [[1]] * 4
    assert mec.pull(("a",), targets=2) == [[1]]
    assert mec.pull("a") == [1] * 4


def test_decision5_zip_pull_forms(mec):
    mec.push(dict(a=10, b=20))
    assert mec.zip_pull(("a", "b")) == [(10, 10, 10, 10), (20, 20, 20, 20)]
    assert mec.zip_pull("a") == [10, 10, 10, 10]
    assert mec.zip_pull(("a", "b"), targets=0) == [10, 20]
    assert mec.zip_pull(("a", "b"), targets=[1]) == [10, 20]


def test_decision5_zip_pull_all_with_one_engine(fresh_cluster):
    """'all' counts the real engines: one engine is not 'multi'."""
    c = fresh_cluster(1)
    mec = c.multiengine_client()
    try:
        mec.push(dict(a=1.5, b=3453))
        assert mec.zip_pull(("a", "b")) == [1.5, 3453]
    finally:
        mec.close()


def test_decision6_scatter_gather_list_and_tuple(mec):
    mec.scatter("a", list(range(10)))
    assert mec.pull("a") == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert mec.gather("a") == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    mec.scatter("t", (1, 2, 3, 4, 5))
    assert mec.pull("t") == [(1, 2), (3,), (4,), (5,)]
    assert mec.gather("t") == (1, 2, 3, 4, 5)


def test_decision6_scatter_gather_str_and_bytes(mec):
    mec.scatter("s", "abcdefgh")
    assert mec.pull("s") == ["ab", "cd", "ef", "gh"]
    assert mec.gather("s") == "abcdefgh"
    mec.scatter("b", b"abcdefghij")
    assert mec.pull("b") == [b"abc", b"def", b"gh", b"ij"]
    assert mec.gather("b") == b"abcdefghij"


def test_decision6_scatter_gather_numpy(mec):
    arr = np.arange(16, dtype=np.float64)
    mec.scatter("x", arr)
    parts = mec.pull("x")
    assert all(isinstance(p, np.ndarray) for p in parts)
    assert [p.tolist() for p in parts] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9, 10, 11],
        [12, 13, 14, 15],
    ]
    assert all(p.flags.writeable for p in parts)
    mec.execute("x[0] = -1")  # arrays are writable on the engines too
    back = mec.gather("x")
    assert isinstance(back, np.ndarray)
    assert back.dtype == np.float64
    assert back.tolist() == [-1, 1, 2, 3, -1, 5, 6, 7, -1, 9, 10, 11, -1, 13, 14, 15]


def test_decision6_flatten(mec):
    mec.scatter("a", list(range(6)), flatten=True)
    assert mec.pull("a") == [[0, 1], [2, 3], 4, 5]
    assert mec.gather("a") == [0, 1, 2, 3, 4, 5]
    mec.scatter("c", range(4), flatten=True)
    assert mec.pull("c") == [0, 1, 2, 3]
    assert mec.gather("c") == [0, 1, 2, 3]


def test_decision6_flatten_of_nested_lists_round_trips(mec):
    """gather undoes flatten: scattering a list of lists and gathering it gives it back."""
    mec.scatter("a", [[1, 2], [3, 4], [5, 6], [7, 8]], flatten=True)
    assert mec.pull("a") == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert mec.gather("a") == [[1, 2], [3, 4], [5, 6], [7, 8]]
    mec.scatter("b", [[1, 2], [3, 4], [5, 6], [7, 8], [9]], flatten=True)
    assert mec.pull("b") == [[[1, 2], [3, 4]], [5, 6], [7, 8], [9]]
    assert mec.gather("b") == [[1, 2], [3, 4], [5, 6], [7, 8], [9]]


def test_decision6_flatten_numpy_str_bytes(mec):
    mec.scatter("x", np.arange(6), flatten=True)
    back = mec.gather("x")
    assert isinstance(back, np.ndarray)
    assert back.tolist() == [0, 1, 2, 3, 4, 5]
    mec.scatter("s", "abcdef", flatten=True)
    assert mec.gather("s") == "abcdef"
    mec.scatter("b", b"abcdef", flatten=True)
    assert mec.gather("b") == b"abcdef"
    mec.scatter("t", (1, 2, 3, 4, 5, 6), flatten=True)
    assert mec.gather("t") == (1, 2, 3, 4, 5, 6)


def test_map_by_name_of_a_callable_on_the_engines(mec):
    """seed §2.8: func may be a str naming a callable already on the engines, e.g. 'abs'."""
    mec.execute("def sq(x): return x*x")
    assert mec.map("sq", range(5)) == [0, 1, 4, 9, 16]
    assert mec.map("abs", [-1, -2, 3, -4, 5]) == [1, 2, 3, 4, 5]


def test_map_of_several_sequences(mec):
    assert mec.map(lambda x, y: x * y, range(5), [10, 20, 30, 40, 50]) == [0, 20, 60, 120, 200]
    with pytest.raises(ValueError):
        mec.map(lambda x, y: x * y, range(5), range(4))


def test_decision6_round_robin(mec):
    mec.scatter("a", list(range(10)), dist="r")
    assert mec.pull("a") == [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]]
    assert mec.gather("a", dist="r") == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert mec.map(lambda x: x + 1, range(6)) == [1, 2, 3, 4, 5, 6]
    assert mec.mapper(dist="r").map(lambda x: x + 1, range(6)) == [1, 2, 3, 4, 5, 6]


def test_scatter_gather_targets_and_errors(mec):
    mec.scatter("a", list(range(4)), targets=[3, 1])
    assert mec.pull("a", targets=[1, 3]) == [[2, 3], [0, 1]]
    assert mec.gather("a", targets=[3, 1]) == [0, 1, 2, 3]
    assert mec.gather("id") == [0, 1, 2, 3]
    with pytest.raises(InvalidEngineID):
        mec.scatter("a", list(range(4)), targets=[0, 9])
    with pytest.raises(KeyError):
        mec.scatter("a", list(range(4)), dist="x")
    with pytest.raises(CompositeError) as exc:
        mec.gather("asdf")
    assert [et for et, _, _ in exc.value.elist] == [NameError] * 4


def test_nonblocking_scatter_gather(mec):
    pr = mec.scatter("a", list(range(16)), block=False)
    assert isinstance(pr, PendingResult)
    assert pr.r == [None] * 4
    pr = mec.gather("a", block=False)
    assert pr.r == list(range(16))


def test_decision7_execution_stops_at_first_exception(mec):
    with pytest.raises(CompositeError):
        mec.execute("x = 1\n1/0\ny = 2")
    assert mec.pull("x") == [1] * 4
    with pytest.raises(CompositeError) as exc:
        mec.pull("y")
    assert [et for et, _, _ in exc.value.elist] == [NameError] * 4


def test_decision8_get_result_returns_last_command_even_if_failed(mec):
    mec.execute("a = 1")
    with pytest.raises(CompositeError):
        mec.execute("1/0")
    rl = mec.get_result()
    assert isinstance(rl, ResultList)
    assert [r["number"] for r in rl] == [2] * 4
    assert [r["input"]["raw"] for r in rl] == ["1/0"] * 4
    assert all("ZeroDivisionError" in str(r["traceback"]) for r in rl)
    assert [r["input"]["raw"] for r in mec.get_result(1)] == ["a = 1"] * 4


def test_get_result_honours_targets(mec):
    """Decision 1."""
    mec.execute("a = 1")
    rl = mec.get_result(targets=1)
    assert [r["id"] for r in rl] == [1]


def test_decision12_queue_status(mec, latch):
    assert mec.queue_status() == [(i, {"queue": [], "pending": None}) for i in range(4)]
    gate = latch()
    running = mec.execute(gate.wait_code, targets=0, block=False)
    queued = mec.execute("a=1", targets=0, block=False)
    status = mec.queue_status(targets=0)
    assert status == [(0, {"queue": ["execute('a=1')"], "pending": f"execute({gate.wait_code!r})"})]
    gate.set()
    mec.barrier([running, queued])
    assert mec.queue_status(targets=0) == [(0, {"queue": [], "pending": None})]


def test_decision12_invalid_deferred_id_message(mec):
    pr = mec.execute("a = 1", block=False)
    _ = pr.r
    with pytest.raises(InvalidDeferredID) as exc:
        mec.get_pending_deferred(pr.result_id)
    assert pr.result_id in str(exc.value)
    assert "%r" not in str(exc.value)


def test_reset_and_keys(mec):
    mec.push(dict(a=10, b=20, c=list(range(10))), targets=0)
    keys = mec.keys(targets=0)[0]
    assert {"a", "b", "c"} <= set(keys)
    mec.reset(targets=0)
    assert mec.keys(targets=0) == [["id", "mpi"]]
    assert [r["number"] for r in mec.execute("pass", targets=0)] == [1]


def test_run_file(mec, tmp_path):
    f = tmp_path / "script.py"
    f.write_text("a = 10\nb=30\n")
    r = mec.run(f)
    assert type(r) is list
    assert mec.pull(("a", "b")) == [[10, 30]] * 4
    bad = tmp_path / "bad.py"
    bad.write_text("7=5\n")
    with pytest.raises(SyntaxError):
        mec.run(bad)


def test_commands_keep_their_order_on_each_engine(mec, latch):
    gate = latch()
    pr1 = mec.execute(f"{gate.wait_code}\nv = 1", block=False)
    pr2 = mec.execute("v = v + 1", block=False)
    assert not pr2.done()  # it waits behind the first command, which cannot end yet
    gate.set()
    assert pr2.r and pr1.r
    assert mec.pull("v") == [2] * 4
