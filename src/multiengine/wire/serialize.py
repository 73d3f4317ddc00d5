"""Turning Python values into bytes and back.

Values are pickled with protocol 5 by cloudpickle, so lambdas, closures, default
arguments and functions defined in ``__main__`` travel by value. Buffers of at least
:data:`OOB_THRESHOLD` bytes (numpy arrays; ``bytes`` and ``bytearray`` values at the top
of a value or one level into a dict, list or tuple of at most :data:`SCAN_AT_MOST`
items) are taken out of the pickle stream and sent as their own zero-copy frames;
arrays are used in place on arrival, so they are writable and were never copied by the
wire. Functions are pickled once per function object and unpickled once per stream
(see "functions, pickled once" below).

:func:`serialize` and :class:`Serialized` are the seed's explicit form, used by
``push_serialized``/``pull_serialized``.
"""

from __future__ import annotations

import io
import os
import pickle
import site
import sys
import types
import weakref
from collections import OrderedDict
from typing import Any

import cloudpickle

from ..errors import SerializationError
from . import shm
from .shm import Envelope

__all__ = ["OOB_THRESHOLD", "dumps", "loads", "serialize", "Serialized", "rebind_globals"]

OOB_THRESHOLD = 64 * 1024


def _bytes_from_buffer(buf: Any) -> bytes:
    return bytes(buf)


_INSTALLED = tuple(
    {
        os.path.realpath(p) + os.sep
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages())
    }
)
_by_value_checked: set[str] = set()


def _send_module_by_value(module_name: str | None) -> None:
    """Functions of the user's own modules travel by value, as interactive ones do.

    A module imported from the user's files (a script's neighbour, say) is usually
    not importable on the engines, so cloudpickle's by-reference pickling would fail
    there with ModuleNotFoundError. Modules of the Python installation and its
    site-packages, and multiengine itself, are still sent by reference.
    """
    if not module_name or module_name in _by_value_checked:
        return
    _by_value_checked.add(module_name)
    top = module_name.partition(".")[0]
    if top in ("__main__", "multiengine") or top in sys.stdlib_module_names:
        return
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if module is None or not path:
        return
    if not os.path.realpath(path).startswith(_INSTALLED):
        try:
            cloudpickle.register_pickle_by_value(module)
        except ValueError:
            pass


class _OutOfBand:
    """A large ``bytes``/``bytearray`` to be sent as its own frame.

    The pickler handles these two types before any hook can see them, so values are
    wrapped before pickling (see :func:`_wrap_large`) and come back as themselves.
    """

    __slots__ = ("value",)

    def __init__(self, value: bytes | bytearray) -> None:
        self.value = value

    def __reduce_ex__(self, protocol: Any) -> Any:
        rebuild = _bytes_from_buffer if type(self.value) is bytes else _bytearray_from_buffer
        return rebuild, (pickle.PickleBuffer(self.value),)


def _bytearray_from_buffer(buf: Any) -> bytearray:
    return bytearray(buf)


def _is_large(v: Any) -> bool:
    return type(v) in (bytes, bytearray) and len(v) >= OOB_THRESHOLD


# Containers longer than this are not searched for large bytes (they are pickled in the
# stream): the search is a Python loop, 30 ms for a list of 500,000 ints, several times
# the pickling itself.
SCAN_AT_MOST = 256


def _wrap_large(obj: Any) -> Any:
    """Wrap large bytes found at the top or one level into a dict, list or tuple (of at
    most :data:`SCAN_AT_MOST` items)."""
    if _is_large(obj):
        return _OutOfBand(obj)
    t = type(obj)
    if t not in (dict, list, tuple) or len(obj) > SCAN_AT_MOST:
        return obj
    if t is dict and any(_is_large(v) for v in obj.values()):
        return {k: _OutOfBand(v) if _is_large(v) else v for k, v in obj.items()}
    if t in (list, tuple) and any(_is_large(v) for v in obj):
        return t(_OutOfBand(v) if _is_large(v) else v for v in obj)
    if t is tuple and obj and type(obj[0]) is dict:  # the argument tuples of push & co.
        return (_wrap_large(obj[0]), *obj[1:])
    return obj


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle is not annotated
    """cloudpickle, plus functions of the user's local modules sent by value, and every
    function pickled once (see :func:`_function_stream`)."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.FunctionType:
            if obj is _function_from_stream:
                return NotImplemented  # by reference, as pickle does by itself
            return _function_from_stream, (_function_stream(obj),)
        if isinstance(obj, type):
            _send_module_by_value(getattr(obj, "__module__", None))
        return super().reducer_override(obj)


class _FunctionPickler(cloudpickle.Pickler):  # type: ignore[misc]
    """Pickles one function itself (by value or by reference), for the cache."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (types.FunctionType, type)):
            _send_module_by_value(getattr(obj, "__module__", None))
        return super().reducer_override(obj)


# ------------------------------------------------------------------ functions, pickled once
# cloudpickle takes 15-20 µs for a function defined in __main__ (by value), unpickling 5-8
# µs: more than a no-op call's own work. A function is pickled once per function object
# (a weak cache here), and the engine unpickles a stream it has seen before only once
# (FUNCTIONS_KEPT streams, the least recently used forgotten). A redefined function is
# a new object, pickled afresh. What the pickled form depends on besides the code
# (default values, closure cells, the globals it names) is compared by identity at
# each use: rebinding any of them pickles the function again; a value changed in place
# (an item appended to a list default) is not seen, as it is not between two calls of
# the same function on one engine either.
FUNCTIONS_KEPT = 256

_sent: weakref.WeakKeyDictionary[types.FunctionType, tuple[tuple[Any, ...], bytes]] = (
    weakref.WeakKeyDictionary()
)
_received: OrderedDict[bytes, Any] = OrderedDict()
_names: weakref.WeakKeyDictionary[types.CodeType, tuple[str, ...]] = weakref.WeakKeyDictionary()
_ABSENT = object()


def _fingerprint(f: types.FunctionType) -> tuple[Any, ...]:
    code = f.__code__
    names = _names.get(code)
    if names is None:
        names = _names[code] = tuple(_global_names(code))
    g = f.__globals__
    cells: tuple[int, ...] = ()
    if f.__closure__:
        cells = tuple(id(_cell_value(c)) for c in f.__closure__)
    return (
        id(code),
        id(f.__defaults__),
        id(f.__kwdefaults__),
        cells,
        tuple(id(g.get(n, _ABSENT)) for n in names),
    )


def _cell_value(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell (a name not bound yet)
        return _ABSENT


def _function_stream(f: types.FunctionType) -> bytes:
    """The pickle of ``f`` alone, made once per function object and state."""
    fp = _fingerprint(f)
    hit = _sent.get(f)
    if hit is not None and hit[0] == fp:
        return hit[1]
    _send_module_by_value(f.__module__)
    buf = io.BytesIO()
    _FunctionPickler(buf, protocol=5).dump(f)
    stream = buf.getvalue()
    try:
        _sent[f] = (fp, stream)
    except TypeError:  # (every plain function takes weak references; just in case)
        pass
    return stream


def _function_from_stream(stream: bytes) -> Any:
    """The function a :func:`_function_stream` made, unpickled once per stream."""
    f = _received.get(stream)
    if f is None:
        f = pickle.loads(stream)
        _received[stream] = f
        if len(_received) > FUNCTIONS_KEPT:
            _received.popitem(last=False)
    else:
        _received.move_to_end(stream)
    return f


_SCALARS = frozenset({int, float, str, bool, type(None)})


def _plain(obj: Any, depth: int = 3) -> bool:
    """Whether ``obj`` is only numbers, strings, small bytes, ``None``, and tuples,
    lists and str-keyed dicts of them (``depth`` levels deep): what the standard pickler
    writes as cloudpickle would, in a seventh of the time (a tiny task's arguments, its
    result; cloudpickle's pickler asks Python about every object it meets)."""
    t = type(obj)
    if t in _SCALARS:
        return True
    if t is bytes:
        return len(obj) < OOB_THRESHOLD
    if t not in (tuple, list, dict) or not depth or len(obj) > SCAN_AT_MOST:
        return False
    # (scalars are looked at here rather than in a call each: a command's result is
    # checked on every answer, and most of what it holds is scalars)
    if t is dict:
        for k, v in obj.items():
            if type(k) is not str or (type(v) not in _SCALARS and not _plain(v, depth - 1)):
                return False
        return True
    for v in obj:
        if type(v) not in _SCALARS and not _plain(v, depth - 1):
            return False
    return True


def dumps(obj: Any, plain: bool = False) -> tuple[bytes, list[Any]]:
    """Pickle ``obj``; return the stream and the out-of-band buffers. ``plain``: the
    caller knows that ``obj`` is plain data (:func:`_plain`: an engine's ``execute``
    result), and it is not looked through again."""
    if plain or _plain(obj):
        return pickle.dumps(obj, protocol=5), []
    buffers: list[Any] = []

    def keep(pb: pickle.PickleBuffer) -> bool:
        raw = pb.raw()
        if raw.nbytes < OOB_THRESHOLD:
            return True  # small: stays in the stream
        buffers.append(raw)
        return False

    f = io.BytesIO()
    try:
        _Pickler(f, protocol=5, buffer_callback=keep).dump(_wrap_large(obj))
    except SerializationError:
        raise
    except Exception as e:  # PicklingError, TypeError, AttributeError, RecursionError...
        raise SerializationError(f"cannot serialize {_describe(obj)}: {e}") from e
    return f.getvalue(), buffers


def _describe(obj: Any) -> str:
    """A short repr of ``obj`` for an error message; its type when its repr fails (a
    structure nested too deeply for repr, a ``__repr__`` that raises)."""
    try:
        r = repr(obj)
    except Exception as e:
        return f"a {type(obj).__name__} (whose repr failed: {type(e).__name__})"
    return r if len(r) <= 80 else r[:77] + "..."


def loads(data: Any, buffers: list[Any] | None = None) -> Any:
    """Unpickle a stream made by :func:`dumps` with its buffers (zmq Frames or bytes),
    or a :class:`~.shm.Envelope` whose buffers are in shared memory."""
    t = type(data)
    if t is Envelope:
        return pickle.loads(data.pickle, buffers=shm.receive(data))
    if t is not bytes and t is not memoryview and hasattr(data, "buffer"):
        data = data.buffer  # a zmq Frame
    # (a pickle starts with its PROTO opcode: most streams are told from an envelope
    # without a call)
    if data and data[0] == shm.ENVELOPE_START and shm.is_envelope(data):
        env = Envelope.from_bytes(data)
        return pickle.loads(env.pickle, buffers=shm.receive(env))
    if not buffers:  # (a small value: everything is in the stream)
        return pickle.loads(data)
    return pickle.loads(data, buffers=[b.buffer if hasattr(b, "buffer") else b for b in buffers])


def rebind_globals(obj: Any, namespace: dict[str, Any]) -> Any:
    """Make a function pickled by value resolve its globals in ``namespace``.

    The seed rebuilt pushed functions with the engine's namespace as their globals
    (``testPushFunctionGlobal``). cloudpickle gives them a private globals dict holding
    only what they referenced on the client; those values are added to the namespace
    where it does not define the name yet, and the function is rebuilt on it. Functions
    of modules keep their module's globals; for the user's own modules (sent by value)
    a name the module does not define is filled in from the engine's namespace.
    """
    if not isinstance(obj, types.FunctionType):
        return obj
    if obj.__module__ not in ("__main__", None):
        mod = sys.modules.get(obj.__module__)
        if mod is None or mod.__dict__ is not obj.__globals__:
            # sent by value from the user's own module: it keeps its module's globals;
            # names its module does not define are taken from the engine, as they are now
            # (at every call: an unpickled function is kept and called again)
            g = obj.__globals__
            filled: set[str] = g.setdefault(_FILLED, set())
            for name in _global_names(obj.__code__):
                if name in filled or name not in g:
                    if name in namespace:
                        g[name] = namespace[name]
                        filled.add(name)
                    elif name in filled:
                        del g[name]
                        filled.discard(name)
        return obj
    mod = sys.modules.get("__main__")
    if mod is not None and getattr(mod, "__dict__", None) is obj.__globals__:
        return obj
    for name, value in obj.__globals__.items():
        if not name.startswith("__"):
            namespace.setdefault(name, value)
    f = types.FunctionType(obj.__code__, namespace, obj.__name__, obj.__defaults__, obj.__closure__)
    f.__kwdefaults__ = obj.__kwdefaults__
    f.__dict__.update(obj.__dict__)
    f.__qualname__ = obj.__qualname__
    f.__doc__ = obj.__doc__
    f.__module__ = "__main__"
    return f


_FILLED = "__multiengine_filled__"  # the globals a module's functions took from the engine


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


class Serialized:
    """A value already turned into bytes (the seed's ``newserialized``).

    ``typeDescriptor`` is ``'ndarray'`` (``metadata`` has ``shape`` and ``dtype``; ``data``
    is the raw buffer) or ``'pickle'`` (``metadata`` is ``{}``).
    """

    def __init__(self, data: Any, typeDescriptor: str, metadata: dict[str, Any]) -> None:
        self.data = data
        self.typeDescriptor = typeDescriptor
        self.metadata = metadata

    def getData(self) -> Any:
        return self.data

    def getDataSize(self, units: float = 1e6) -> float:
        return memoryview(self.data).nbytes / units

    def getTypeDescriptor(self) -> str:
        return self.typeDescriptor

    def getMetadata(self) -> dict[str, Any]:
        return self.metadata

    def unserialize(self) -> Any:
        if self.typeDescriptor == "ndarray":
            import numpy as np

            arr = np.frombuffer(self.data, dtype=self.metadata["dtype"])
            arr = arr.reshape(self.metadata["shape"])
            return arr if arr.flags.writeable else arr.copy()
        return pickle.loads(self.data)

    def __reduce__(self) -> Any:
        data = self.data
        if self.typeDescriptor == "ndarray" and memoryview(data).nbytes >= OOB_THRESHOLD:
            data = pickle.PickleBuffer(data)
        return (_rebuild_serialized, (data, self.typeDescriptor, self.metadata))

    def __repr__(self) -> str:
        return f"<Serialized {self.typeDescriptor} {self.metadata} {self.getDataSize(1):.0f} B>"


def _rebuild_serialized(data: Any, td: str, md: dict[str, Any]) -> Serialized:
    return Serialized(data, td, md)


def serialize(obj: Any) -> Serialized:
    """Serialize ``obj`` ahead of a push (numpy arrays as raw buffers)."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(obj, np.ndarray) and obj.dtype.kind != "O":
        if obj.size == 0:
            raise SerializationError("You cannot send a length 0 array")
        arr = np.ascontiguousarray(obj)
        return Serialized(
            memoryview(arr).cast("B"), "ndarray", {"shape": arr.shape, "dtype": arr.dtype.str}
        )
    data, buffers = dumps(obj)
    if buffers:  # keep a Serialized self-contained: buffers go back into the stream
        try:
            data = cloudpickle.dumps(obj, protocol=5)
        except Exception as e:
            raise SerializationError(f"cannot serialize {_describe(obj)}: {e}") from e
    return Serialized(data, "pickle", {})
