"""The seed's documented MultiEngine examples (seed-tests §F 1-18, 23, 24) on 4 real engines.

``%px`` in the docs is ``mec.execute`` here, and Python 2's ``print x`` is ``print(x)``.
Where contract.md §5 changed a seed behaviour, the test checks the decision.
"""

from __future__ import annotations

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


def test_f24_strict_dict_copies_values():
    from multiengine.engine.properties import StrictDict

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


def test_f24_result_ns() -> None:
    # §F 24
    ns = multiengine.ResultNS({"a": 17, "foo": list(range(3))})
    assert repr(ns) == "NS{'a': 17, 'foo': [0, 1, 2]}"
    assert ns.a == 17 and ns["foo"] == [0, 1, 2]
