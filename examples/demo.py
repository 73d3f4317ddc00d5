"""A guided tour of multiengine: the one `make demo` runs.

It starts a local cluster (a controller and 4 engines, each engine a Python process
with its own persistent namespace), then replays the examples of the original
IPython.kernel documentation in Python 3: execute, blocking and non-blocking calls,
push/pull, scatter/gather, parallel map, and what errors look like. Every step prints
the call and its result, as an interactive session would, and checks the result
against the documented one: a wrong answer stops the demo with "demo step N gave ...".

The last part is the documentation's pi digits demo: count how often each pair of
digits occurs in the first 8,000,000 digits of pi, on 1 engine and then on 4.

Run it from the project directory:  .venv/bin/python examples/demo.py
The cluster is stopped at the end, whatever happens on the way.
"""

import io
import multiprocessing
import os
import signal
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import multiengine
from multiengine.errors import CompositeError, InvalidDeferredID, InvalidEngineID, QueueCleared

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import pidigits  # noqa: E402  (examples/pidigits.py, next to this file)

N_ENGINES = 4
N_FILES = 8
DIGITS_PER_FILE = 1_000_000
N_DIGITS = N_FILES * DIGITS_PER_FILE
PI_START = "31415926535897932384626433832795028841971693993751"
PI_MILLIONTH = (999_991, "5779458151")  # decimal places 999,991 to 1,000,000, a well-known landmark


# ---------------------------------------------------------------- printing
def step(n, title):
    print(f"\n== {n}. {title} " + "=" * max(3, 74 - len(title) - len(str(n))))


def say(text):
    print(textwrap.fill(text, 88, initial_indent="# ", subsequent_indent="# "))


def show(code, value=None):
    """Print ``code`` as typed at a prompt, then ``value`` as the prompt would
    (None shows nothing)."""
    lines = code.splitlines()
    print(">>> " + lines[0])
    for line in lines[1:]:
        print("... " + line)
    if value is not None:
        print(repr(value).rstrip("\n"))
    return value


def expect_error(n, code, error, call):
    """Show ``code`` failing as documented: ``call()`` must raise ``error``.
    Returns the exception."""
    try:
        value = call()
    except error as e:
        show(code)
        print(f"{type(e).__name__}: {e}")
        return e
    raise SystemExit(f"demo step {n} gave {value!r} for {code}, expected {error.__name__}")


def rows(result):
    """(engine id, In number, stdout) of each row of a ResultList, to compare with the docs."""
    return [(r["id"], r["number"], r.get("stdout")) for r in result]


# ---------------------------------------------------------------- the tour
def tour(mec):
    step(1, "The engines")
    ids = show("mec.get_ids()", mec.get_ids())
    if ids != [0, 1, 2, 3]:
        raise SystemExit(f"demo step 1 gave {ids!r}, expected [0, 1, 2, 3]")

    step(2, "Hello World, on every engine")
    say(
        "execute() runs code on every engine and returns one row per engine: "
        "In is the code, Out what it printed."
    )
    r = show("mec.execute('print(\"Hello World\")')", mec.execute('print("Hello World")'))
    want = [(i, 1, "Hello World\n") for i in range(4)]  # (engine id, In [n], output) of each row
    if rows(r) != want:
        raise SystemExit(f"demo step 2 gave {rows(r)!r}, expected {want!r}")

    step(3, "A parallel map")
    say("map() cuts the sequence in 4 blocks, one per engine, and joins the results in order.")
    same = show(
        "mec.map(lambda x: x**10, range(32)) == list(map(lambda x: x**10, range(32)))",
        mec.map(lambda x: x**10, range(32)) == list(map(lambda x: x**10, range(32))),
    )
    if same is not True:
        raise SystemExit(f"demo step 3 gave {same!r}, expected True")

    step(4, "A parallel function")

    @mec.parallel()
    def f(x):
        return 10.0 * x**4

    show("@mec.parallel()\ndef f(x):\n    return 10.0 * x**4\n")
    r = f(range(32))
    show("f(range(32))")
    print(f"[{', '.join(map(repr, r[:6]))}, ... {r[-1]!r}]  ({len(r)} values)")
    if r != [10.0 * x**4 for x in range(32)]:
        raise SystemExit(f"demo step 4 gave {r!r}, expected [10.0 * x**4 for x in range(32)]")

    step(5, "Persistent namespaces")
    say(
        "Each engine keeps its variables between calls. "
        "reset() empties the namespaces and restarts In [n] at 1."
    )
    show("mec.reset()", mec.reset())
    k = show("mec.keys()", mec.keys())
    if k != [["id", "mpi"]] * 4:
        raise SystemExit(f"demo step 5 gave keys {k!r} after reset, expected [['id', 'mpi']] * 4")
    r1 = show("mec.execute('a=5')", mec.execute("a=5"))
    r2 = show("mec.execute('b=10')", mec.execute("b=10"))
    if rows(r1) != [(i, 1, None) for i in range(4)] or rows(r2) != [(i, 2, None) for i in range(4)]:
        raise SystemExit(
            f"demo step 5 gave {rows(r1)!r} and {rows(r2)!r}, "
            "expected In [1] and In [2] on engines 0-3"
        )

    step(6, "Running on some engines only")
    r1 = show("mec.execute('c=a+b', targets=[0, 2])", mec.execute("c=a+b", targets=[0, 2]))
    r2 = show("mec.execute('c=a-b', targets=[1, 3])", mec.execute("c=a-b", targets=[1, 3]))
    r3 = show("mec.execute('print(c)')", mec.execute("print(c)"))
    if rows(r1) != [(0, 3, None), (2, 3, None)] or rows(r2) != [(1, 3, None), (3, 3, None)]:
        raise SystemExit(
            f"demo step 6 gave {rows(r1)!r} and {rows(r2)!r}, "
            "expected In [3] on engines 0, 2 and 1, 3"
        )
    if rows(r3) != [(0, 4, "15\n"), (1, 4, "-5\n"), (2, 4, "15\n"), (3, 4, "-5\n")]:
        raise SystemExit(f"demo step 6 gave {rows(r3)!r}, expected 15, -5, 15, -5")

    step(7, "The rows are dicts")
    show("for r in mec.execute('d=10; print(d)'):\n    print(r)\n")
    r = mec.execute("d=10; print(d)")
    for row in r:
        print(row)
    inp = {"raw": "d=10; print(d)", "translated": "d=10; print(d)"}
    want = [{"input": inp, "number": 5, "id": i, "stdout": "10\n"} for i in range(4)]
    if list(r) != want:
        raise SystemExit(f"demo step 7 gave {list(r)!r}, expected {want!r}")

    step(8, "Non-blocking calls")
    say(
        "With block=False a call returns a PendingResult at once; .get_result() or .r waits for it."
    )
    say("(The docs sleep 10 s here; 2 s is enough to see it.)")
    show("mec.execute('import time')", mec.execute("import time"))
    pr = show(
        "pr = mec.execute('time.sleep(2)', block=False)", mec.execute("time.sleep(2)", block=False)
    )
    t0 = time.perf_counter()
    early = show("pr.get_result(block=False)   # still sleeping: None", pr.get_result(block=False))
    if early is not None:
        raise SystemExit(f"demo step 8 gave {early!r} before the sleep ended, expected None")
    r = show("pr.get_result()", pr.get_result())
    waited = time.perf_counter() - t0
    print(f"# (waited {waited:.1f} s)")
    again = show("pr.r", pr.r)
    if rows(r) != [(i, 7, None) for i in range(4)] or again is not r or waited < 1.0:
        raise SystemExit(
            f"demo step 8 gave {rows(r)!r} after {waited:.1f} s, then {again!r}; "
            "expected In [7] on engines 0-3 after about 2 s, then the same list again"
        )

    step(9, "Waiting for many results: barrier")
    say("(The docs queue ten 3 s sleeps; ten of 0.3 s here.)")
    show("mec.block = False")
    mec.block = False
    pr_list = [mec.execute("time.sleep(0.3)") for i in range(10)]
    show("pr_list = [mec.execute('time.sleep(0.3)') for i in range(10)]")
    t0 = time.perf_counter()
    show("mec.barrier(pr_list)", mec.barrier(pr_list))
    waited = time.perf_counter() - t0
    print(
        f"# (waited {waited:.1f} s: each engine ran its ten sleeps in turn, "
        "the four engines side by side)"
    )
    r = show("pr_list[0].r", pr_list[0].r)
    done = [p.done() for p in pr_list]
    if (
        rows(r) != [(i, 8, None) for i in range(4)]
        or not all(done)
        or rows(pr_list[9].r) != [(i, 17, None) for i in range(4)]
    ):
        raise SystemExit(
            f"demo step 9 gave {rows(r)!r}, done={done}; expected In [8] on engines 0-3, all done"
        )

    step(10, "Default targets and block")
    show("mec.targets = [0, 2]")
    show("mec.block = False")
    mec.targets = [0, 2]
    mec.block = False
    pr = show("pr = mec.execute('a=5')", mec.execute("a=5"))
    r1 = show("pr.r", pr.r)
    show("mec.targets = 'all'")
    show("mec.block = True")
    mec.targets = "all"
    mec.block = True
    r2 = show("mec.execute('b=10; print(b)')", mec.execute("b=10; print(b)"))
    if rows(r1) != [(0, 18, None), (2, 18, None)]:
        raise SystemExit(f"demo step 10 gave {rows(r1)!r}, expected engines 0 and 2")
    if rows(r2) != [(0, 19, "10\n"), (1, 18, "10\n"), (2, 19, "10\n"), (3, 18, "10\n")]:
        raise SystemExit(f"demo step 10 gave {rows(r2)!r}, expected Out 10 on engines 0-3")

    step(11, "Moving data: push and pull")
    pushed = show("mec.push(dict(a=1.03234, b=3453))", mec.push(dict(a=1.03234, b=3453)))
    a = show("mec.pull('a')", mec.pull("a"))
    b0 = show("mec.pull('b', targets=0)", mec.pull("b", targets=0))
    ab = show("mec.pull(('a', 'b'))", mec.pull(("a", "b")))
    z = show("mec.zip_pull(('a', 'b'))", mec.zip_pull(("a", "b")))
    expected = (
        [None] * 4,
        [1.03234] * 4,
        [3453],
        [[1.03234, 3453]] * 4,
        [(1.03234,) * 4, (3453,) * 4],
    )
    if (pushed, a, b0, ab, z) != expected:
        raise SystemExit(f"demo step 11 gave {(pushed, a, b0, ab, z)!r}, expected {expected!r}")

    step(12, "Pushed values are ordinary variables on the engines")
    pushed = show("mec.push(dict(c='speed'))", mec.push(dict(c="speed")))
    r = show("mec.execute('print(c)')", mec.execute("print(c)"))
    if pushed != [None] * 4 or [x[2] for x in rows(r)] != ["speed\n"] * 4:
        raise SystemExit(
            f"demo step 12 gave {pushed!r} and {rows(r)!r}, expected Out speed on engines 0-3"
        )

    step(13, "A non-blocking pull")
    show("mec.block = False")
    mec.block = False
    pr = show("pr = mec.pull('a')", mec.pull("a"))
    a = show("pr.r", pr.r)
    show("mec.block = True")
    mec.block = True
    if a != [1.03234] * 4:
        raise SystemExit(f"demo step 13 gave {a!r}, expected [1.03234] * 4")

    step(14, "Pushing a function")

    def f(x):
        return 2.0 * x**4

    show("def f(x):\n    return 2.0 * x**4\n")
    pushed = show("mec.push_function(dict(f=f))", mec.push_function(dict(f=f)))
    show("mec.execute('y = f(4.0)')", mec.execute("y = f(4.0)"))
    r = show("mec.execute('print(y)')", mec.execute("print(y)"))
    if pushed != [None] * 4 or [x[2] for x in rows(r)] != ["512.0\n"] * 4:
        raise SystemExit(
            f"demo step 14 gave {pushed!r} and {rows(r)!r}, expected 512.0 on every engine"
        )

    step(15, "The client as a dictionary")
    show("mec['a'] = ['foo', 'bar']")
    mec["a"] = ["foo", "bar"]
    a = show("mec['a']", mec["a"])
    if a != [["foo", "bar"]] * 4:
        raise SystemExit(f"demo step 15 gave {a!r}, expected [['foo', 'bar']] * 4")

    step(16, "Scatter and gather")
    say(
        "scatter() gives each engine one block of a sequence; "
        "gather() puts the blocks back together."
    )
    s = show("mec.scatter('a', range(16))", mec.scatter("a", range(16)))
    r = show("mec.execute('print(a)')", mec.execute("print(a)"))
    g = show("mec.gather('a')", mec.gather("a"))
    parts = [x[2] for x in rows(r)]
    want = [f"{list(range(4 * i, 4 * i + 4))}\n" for i in range(4)]
    if s != [None] * 4 or parts != want or g != list(range(16)):
        raise SystemExit(
            f"demo step 16 gave {s!r}, {parts!r}, {g!r}; "
            f"expected [None] * 4, {want!r}, list(range(16))"
        )

    step(17, "A parallel list comprehension")
    show("mec.scatter('x', range(64))", mec.scatter("x", range(64)))
    show("mec.execute('y = [i**10 for i in x]')", mec.execute("y = [i**10 for i in x]"))
    y = mec.gather("y")
    show("mec.gather('y')")
    print(f"[{', '.join(map(repr, y[:9]))}, ...]  ({len(y)} values)")
    if y != [i**10 for i in range(64)]:
        raise SystemExit(f"demo step 17 gave {y!r}, expected [i**10 for i in range(64)]")

    step(18, "Errors: CompositeError")
    say("When engines fail, the call raises one CompositeError listing every engine's exception.")
    e = expect_error(18, "mec.execute('1/0')", CompositeError, lambda: mec.execute("1/0"))
    expected = "one or more exceptions from call to method: execute" + "".join(
        f"\n[{i}:execute]: ZeroDivisionError: division by zero" for i in range(4)
    )
    if str(e) != expected:
        raise SystemExit(f"demo step 18 gave {str(e)!r}, expected {expected!r}")
    say(
        "Caught as e, it can re-raise any one of the engines' exceptions, "
        "and print their tracebacks."
    )
    expect_error(18, "e.raise_exception()", ZeroDivisionError, e.raise_exception)
    out = io.StringIO()
    e.print_tracebacks(file=out)
    show("e.print_tracebacks()")
    print(out.getvalue().rstrip())
    tracebacks = out.getvalue()
    if [tracebacks.count(f"[{i}:execute]: ") for i in range(4)] != [1] * 4 or tracebacks.count(
        "ZeroDivisionError"
    ) < 4:
        raise SystemExit(f"demo step 18 printed the tracebacks {tracebacks!r}")
    say("The same, non-blocking:")
    pr = show("pr = mec.execute('1/0', block=False)", mec.execute("1/0", block=False))
    e = expect_error(18, "pr.r", CompositeError, lambda: pr.r)
    if str(e) != expected:
        raise SystemExit(f"demo step 18 gave {str(e)!r} for pr.r, expected {expected!r}")

    step(19, "More errors, from the scripted tour (multiengine1.ipy)")
    expect_error(
        19,
        "mec.execute('b = 10', targets=-1)",
        InvalidEngineID,
        lambda: mec.execute("b = 10", targets=-1),
    )
    expect_error(19, "mec.execute('a=5; 1/0')", CompositeError, lambda: mec.execute("a=5; 1/0"))
    show("mec.reset()", mec.reset())
    e = expect_error(
        19,
        "mec.get_result()   # the last command's result: none since the reset",
        CompositeError,
        mec.get_result,
    )
    if [type(ev) for _, ev, _ in e.elist] != [IndexError] * 4:
        raise SystemExit(
            f"demo step 19 gave {e!r} for get_result() after reset(), expected 4 IndexErrors"
        )

    say("clear_queue() drops the commands still waiting; the one running finishes.")
    show("mec.execute('import time')", mec.execute("import time"))
    prs = [mec.execute("time.sleep(1.0)", block=False) for i in range(5)]
    show("prs = [mec.execute('time.sleep(1.0)', block=False) for i in range(5)]")
    show("mec.clear_queue()", mec.clear_queue())
    show("mec.barrier(prs)", mec.barrier(prs))
    r = show("prs[0].r", prs[0].r)
    if rows(r) != [(i, 2, None) for i in range(4)]:
        raise SystemExit(f"demo step 19 gave {rows(r)!r} for the sleep that was running")
    for i in range(1, 5):
        e = expect_error(19, f"prs[{i}].r", CompositeError, lambda i=i: prs[i].r)
        if [type(ev) for _, ev, _ in e.elist] != [QueueCleared] * 4:
            raise SystemExit(
                f"demo step 19 gave {e!r} for prs[{i}].r, expected QueueCleared on 4 engines"
            )

    say("A PendingResult keeps its error: .r raises it again and again.")
    pr = show("pr = mec.execute('1/0', block=False)", mec.execute("1/0", block=False))
    e1 = expect_error(19, "pr.r", CompositeError, lambda: pr.r)
    e2 = expect_error(19, "pr.r", CompositeError, lambda: pr.r)
    if e2 is not e1:
        raise SystemExit(f"demo step 19 raised {e1!r}, then a different {e2!r}, for pr.r")

    say("flush() forgets every result nobody has fetched yet.")
    pd1 = show("pd1 = mec.execute('a=30', block=False)", mec.execute("a=30", block=False))
    pd2 = show("pd2 = mec.pull('a', block=False)", mec.pull("a", block=False))
    show("mec.flush()", mec.flush())
    expect_error(19, "pd1.get_result()", InvalidDeferredID, pd1.get_result)
    expect_error(19, "pd2.get_result()", InvalidDeferredID, pd2.get_result)


# ---------------------------------------------------------------- pi digits
def digits_cache():
    """Where the digits of pi are kept between runs (~/.cache/multiengine, or the temp dir)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "multiengine"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        base = Path(tempfile.gettempdir())
    return base / f"pi-{N_DIGITS}.txt"


def _compute_digits(path):
    signal.signal(
        signal.SIGINT, signal.SIG_IGN
    )  # Ctrl-C is for the demo; it ends this process itself
    pidigits.save_pi_digits(N_DIGITS, path)


def start_digits(path):
    """Compute the digits of pi in a background process (half a minute), unless they are cached."""
    if path.exists() and path.stat().st_size == N_DIGITS:
        return None
    proc = multiprocessing.get_context("spawn").Process(
        target=_compute_digits, args=(str(path),), name="pi-digits"
    )
    proc.start()
    return proc


def wait_digits(path, proc):
    if proc is not None:
        t0 = time.perf_counter()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"computing the digits of pi failed (exit code {proc.exitcode})")
        if time.perf_counter() - t0 > 0.5:
            print(f"# (waited {time.perf_counter() - t0:.1f} s for the digits of pi)")
    digits = path.read_text()
    landmark = digits[PI_MILLIONTH[0] : PI_MILLIONTH[0] + 10]
    if len(digits) != N_DIGITS or not digits.startswith(PI_START) or landmark != PI_MILLIONTH[1]:
        path.unlink(missing_ok=True)
        raise SystemExit(
            f"the digits of pi in {path} are wrong ({len(digits)} digits, {digits[:20]}..., "
            f"{landmark} at the millionth); it was removed, run the demo again"
        )
    return digits


def task_tour(tc, mec):
    step(20, "Load-balanced tasks")
    say(
        "A TaskClient does not name engines: each task goes to whichever engine is free. "
        "The same map and @parallel as in steps 3 and 4, as tasks:"
    )
    same = show(
        "tc.map(lambda x: x**10, range(32)) == [x**10 for x in range(32)]",
        tc.map(lambda x: x**10, range(32)) == [x**10 for x in range(32)],
    )

    @tc.parallel()
    def f(x):
        return 10.0 * x**4

    r = f(range(32))
    show("@tc.parallel()\ndef f(x):\n    return 10.0 * x**4\n")
    show("f(range(32)) == [10.0 * x**4 for x in range(32)]", r == [10.0 * x**4 for x in range(32)])
    if same is not True or r != [10.0 * x**4 for x in range(32)]:
        raise SystemExit("demo step 20 gave a wrong load-balanced map")
    say(
        "task1.py: a StringTask pushes, executes and pulls on one engine, "
        "then clears its namespace."
    )
    mec.push(dict(d=30))
    tr = tc.run(
        multiengine.StringTask(
            "a = 5\nb = 10*d\nc = a*b*d", clear_after=True, pull=["a", "b", "c"]
        ),
        block=True,
    )
    show(
        "mec.push(dict(d=30))\n"
        "tr = tc.run(StringTask('a = 5\\nb = 10*d\\nc = a*b*d', clear_after=True, "
        "pull=['a','b','c']), block=True)"
    )
    show("tr.ns.a, tr.ns.b, tr.ns.c", (tr.ns.a, tr.ns.b, tr.ns.c))
    if (tr.ns.a, tr.ns.b, tr.ns.c) != (5, 300, 45000):
        raise SystemExit(f"demo step 20 gave {tr!r}, expected a=5, b=300, c=45000")
    say("A time limit interrupts running code; the engine survives and keeps its namespace.")
    mec.execute("kept = 'still here'")
    t0 = time.perf_counter()
    try:
        tc.run(multiengine.StringTask("while True: pass", time_limit=0.5), block=True)
        raise SystemExit("demo step 20: a task past its time limit did not fail")
    except multiengine.errors.TaskTimeout as e:
        print(
            ">>> tc.run(StringTask('while True: pass', time_limit=0.5), block=True)\n"
            f"TaskTimeout: {e}"
            f"   (after {time.perf_counter() - t0:.2f} s)"
        )
    kept = show("mec.pull('kept')", mec.pull("kept"))
    if kept != ["still here"] * N_ENGINES:
        raise SystemExit(
            f"demo step 20 gave {kept!r} after the time limit, expected the namespaces kept"
        )


def pi_demo(mec, digits_path, digits_proc):
    step(21, "The pi digits demo")
    say(
        "Count how often each pair of consecutive digits, 00 to 99, occurs in the first "
        f"{N_DIGITS:,} digits of pi, cut into {N_FILES} files of {DIGITS_PER_FILE:,}. "
        "examples/pidigits.py has the functions."
    )
    digits = wait_digits(digits_path, digits_proc)
    with tempfile.TemporaryDirectory(prefix="multiengine-pidigits-") as tmp:
        files = pidigits.write_digit_files(tmp, digits, N_FILES)
        print(
            f"# digits {digits[:12]}... in {N_FILES} files: {files[0]} ... {Path(files[-1]).name}"
        )
        run = mec.run(HERE / "pidigits.py")
        show(
            "mec.run('examples/pidigits.py')   "
            "# defines compute_two_digit_freqs & co. on every engine"
        )
        print(f"# (the file ran as In [{run[0]['number']}] on each of the {len(run)} engines)")
        say(
            "map() is given the function imported from the local module: "
            "the engines cannot import pidigits, so multiengine sends its functions by value "
            "(the name 'compute_two_digit_freqs' works too)."
        )

        t0 = time.perf_counter()
        freqs1 = mec.mapper(targets=0).map(pidigits.compute_two_digit_freqs, files)
        t1 = time.perf_counter() - t0
        show("freqs1 = mec.mapper(targets=0).map(compute_two_digit_freqs, files)   # 1 engine")
        print(f"# {t1:.2f} s on 1 engine: {N_DIGITS / t1 / 1e6:.1f} million digits a second")

        t0 = time.perf_counter()
        freqs4 = mec.map(pidigits.compute_two_digit_freqs, files)
        t4 = time.perf_counter() - t0
        show("freqs4 = mec.map(compute_two_digit_freqs, files)   # 4 engines")
        print(
            f"# {t4:.2f} s on {N_ENGINES} engines: "
            f"{N_DIGITS / t4 / 1e6:.1f} million digits a second"
        )

    total = pidigits.reduce_freqs(freqs4)
    show("total = pidigits.reduce_freqs(freqs4)")
    pairs = N_FILES * (DIGITS_PER_FILE - 1)
    if len(freqs1) != N_FILES or freqs1 != freqs4:
        raise SystemExit(
            "demo step 21 gave different frequency tables on 1 engine and on 4 engines"
        )
    if sum(total) != pairs or pidigits.reduce_freqs(freqs1) != total:
        raise SystemExit(f"demo step 21 gave {sum(total)} digit pairs, expected {pairs}")

    print(
        f"\nHow often each pair occurs ({pairs:,} pairs: "
        f"about {pairs // 100:,} each if the digits are random);"
    )
    print("row = first digit, column = second digit:\n")
    print("     " + "".join(f"{b:>8}" for b in range(10)))
    for a in range(10):
        print(f"  {a}  " + "".join(f"{total[10 * a + b]:>8,}" for b in range(10)))
    lo, hi = min(range(100), key=total.__getitem__), max(range(100), key=total.__getitem__)
    spread = max(abs(c - pairs / 100) for c in total) / (pairs / 100)
    print(
        f"\nLeast common pair: {lo:02d} ({total[lo]:,}); most common: {hi:02d} ({total[hi]:,}); "
        f"no pair strays more than {100 * spread:.1f}% from the mean."
    )

    speedup = t1 / t4
    cores = os.cpu_count() or 1
    print(f"\nSpeed-up with {N_ENGINES} engines: {speedup:.2f}x ({t1:.2f} s -> {t4:.2f} s).")
    if cores < N_ENGINES:
        print(
            f"This machine has {cores} cores, "
            f"so {N_ENGINES} engines can run at most {cores} at a time: "
            f"expect about {cores}x, not {N_ENGINES}x."
        )
    return speedup


# ---------------------------------------------------------------- main
def main():
    t_start = time.perf_counter()
    print(
        f"multiengine {multiengine.__version__}: "
        "a guided tour, after the IPython.kernel documentation."
    )
    digits_path = digits_cache()
    digits_proc = start_digits(digits_path)
    if digits_proc is not None:
        say(
            f"Computing {N_DIGITS:,} digits of pi in the background for the last part; "
            f"they are kept in {digits_path} for next time."
        )
    try:
        step(0, "Start a cluster")
        t0 = time.perf_counter()
        with multiengine.Cluster(n=N_ENGINES) as cluster:
            mec = cluster.multiengine_client()
            show(
                f"with multiengine.Cluster(n={N_ENGINES}) as cluster:\n"
                "    mec = cluster.multiengine_client()"
            )
            print(
                f"# a controller and {N_ENGINES} engines, "
                f"ready in {time.perf_counter() - t0:.2f} s "
                f"(profile {cluster.profile!r}, a temporary one)"
            )
            show("mec", mec)
            tour(mec)
            task_tour(cluster.task_client(), mec)
            pi_demo(mec, digits_path, digits_proc)
        print(
            f"\nThe cluster is stopped. The demo took {time.perf_counter() - t_start:.0f} s; "
            "every step gave the documented result."
        )
    finally:
        if digits_proc is not None and digits_proc.is_alive():
            digits_proc.kill()
            digits_proc.join()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("\nInterrupted. The cluster is stopped.")
