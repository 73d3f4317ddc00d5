"""The seed's shared test data (engineservicetest.py, seed-tests.md §A/§B), in Python 3 form.

How the seed's tests were re-expressed (the tests marked ``seed §A`` ... ``§F``):

* The seed ran against an in-process controller and engines; here every test drives real
  engine processes through the clients. A single engine answers with a 1-element list
  (the seed's engine gave a bare value), and engine-side exceptions arrive inside a
  ``CompositeError``. The seed's "1 engine" cases use ``targets=0``.
* ``block=False`` gives a :class:`PendingResult` fetched with ``.r``/``.get_result()``,
  where the seed gave a deferred id for ``get_pending_deferred(did, True)``.
* ``tc.run(task)`` gives a task id and ``tc.get_task_result(tid, block=True)`` the
  TaskResult (StringTask) or the value (MapTask), as the seed's Deferreds did; the
  blocking task ``map`` raises the first failing item's exception directly.
* Interface introspection (``providedBy``) becomes: the client has the methods.
* Where a decision of contract.md §5 changed the seed's expected value, the test asserts
  the contract's value and names the decision.
"""

from __future__ import annotations

from typing import Any

import multiengine

# The expected message of each valid command, numbered as one shell running them in order
# (the engine adds 'id'). Written out by hand: the displays are Python 3's reprs.
VALID_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("a=5", {"input": {"raw": "a=5", "translated": "a=5"}, "number": 1}),
    ("b=10", {"input": {"raw": "b=10", "translated": "b=10"}, "number": 2}),
    (
        "a=5; b=10; c=a+b",
        {"input": {"raw": "a=5; b=10; c=a+b", "translated": "a=5; b=10; c=a+b"}, "number": 3},
    ),
    (
        "import math; 2.0*math.pi",
        {
            "input": {"raw": "import math; 2.0*math.pi", "translated": "import math; 2.0*math.pi"},
            "number": 4,
            "display": {"pprint": "6.283185307179586", "repr": "6.283185307179586"},
        },
    ),
    (
        "def f():\n    result = 0.0\n    for i in range(10):\n        result += i\n",
        {
            "input": {
                "raw": "def f():\n    result = 0.0\n    for i in range(10):\n        result += i\n",
                "translated": (
                    "def f():\n    result = 0.0\n    for i in range(10):\n        result += i\n"
                ),
            },
            "number": 5,
        },
    ),
    ("if 1<2: a=5", {"input": {"raw": "if 1<2: a=5", "translated": "if 1<2: a=5"}, "number": 6}),
    (
        "import time\ntime.sleep(0.1)",
        {
            "input": {
                "raw": "import time\ntime.sleep(0.1)",
                "translated": "import time\ntime.sleep(0.1)",
            },
            "number": 7,
        },
    ),
    (
        "from math import cos;\nx = 1.0*cos(0.5)",
        {
            "input": {
                "raw": "from math import cos;\nx = 1.0*cos(0.5)",
                "translated": "from math import cos;\nx = 1.0*cos(0.5)",
            },
            "number": 8,
        },
    ),
    (
        "s = 1\ns = set()\n   ",
        {
            "input": {"raw": "s = 1\ns = set()\n   ", "translated": "s = 1\ns = set()\n   "},
            "number": 9,
        },
    ),
    (
        "import math\nmath.cos(1.0)",
        {
            "input": {
                "raw": "import math\nmath.cos(1.0)",
                "translated": "import math\nmath.cos(1.0)",
            },
            "number": 10,
            "display": {"pprint": "0.5403023058681398", "repr": "0.5403023058681398"},
        },
    ),
    (
        "x=1.0234\na=5; b=10",
        {
            "input": {"raw": "x=1.0234\na=5; b=10", "translated": "x=1.0234\na=5; b=10"},
            "number": 11,
        },
    ),
    (
        "x=1.0234\na=5; b=10;",
        {
            "input": {"raw": "x=1.0234\na=5; b=10;", "translated": "x=1.0234\na=5; b=10;"},
            "number": 12,
        },
    ),
]

# 'print v' was the seed's NameError case; in Python 3 it is a SyntaxError, so 'print(v)'.
INVALID_COMMANDS: list[tuple[str, type[BaseException]]] = [
    ("a=1/0", ZeroDivisionError),
    ("print(v)", NameError),
    ("l=[];l[0]", IndexError),
    ("d={};d['a']", KeyError),
    ("assert 1==0", AssertionError),
    ("import abababsdbfsbaljasdlja", ImportError),
    ("raise Exception()", Exception),
]

PUSH_PULL_OBJECTS: list[Any] = [10, "hi there", 1.2342354, {"p": (1, 2)}]

# The seed's helpers testf/testg, defined as in an interactive session (module '__main__'):
# the case contract decision 9 covers (they travel by value and resolve their globals in
# the engine's namespace). ``globala`` is deliberately not defined here, so ``testg`` can
# only work with the engine's ``globala``.
_HELPERS: dict[str, Any] = {"__name__": "__main__"}
exec("def testf(x):\n    return 2.0*x\n\ndef testg(x):\n    return globala*x\n", _HELPERS)
TESTF = _HELPERS["testf"]  # bound to non-test names, so pytest does not collect them
TESTG = _HELPERS["testg"]


def dikt() -> dict[str, Any]:
    """The seed's engine properties. (Its e=range(5) was a list in Python 2.)"""
    return dict(a=5, b="asdf", c=True, d=None, e=list(range(5)))


# The calls of the seed's testInvalidEngineID (and testNoEnginesRegistered), each with
# arguments that would work on a valid target.
INVALID_ID_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("execute", ("a=5",)),
    ("push", (dict(a=5),)),
    ("pull", ("a",)),
    ("reset", ()),
    ("keys", ()),
    ("push_serialized", (dict(a=multiengine.serialize(10)),)),
    ("pull_serialized", ("a",)),
    ("queue_status", ()),
    # Contract decision 1: get_result honours targets, so a bad target is an error too
    # (the seed's get_result ignored targets, which is why its list left it out).
    ("get_result", ()),
]
