"""The controller's answers, decoded: per-engine values, the exceptions that stand for
failures (with the engine's traceback as their cause), what each engine printed, and
where and when each part ran (:func:`metadata`). The result objects users hold
(``ResultList``, ``PendingResult``) are in :mod:`.results`; the calls use these
functions directly when they return plain values.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import zmq

from .. import errors
from ..wire import chunks, shm, slices, warm
from ..wire import protocol as P
from ..wire.message import Message, unpack
from ..wire.protocol import ErrorReport, PartHeader, Printed
from ..wire.serialize import loads

__all__ = [
    "check",
    "decode_part",
    "decode_parts",
    "decode_result",
    "metadata",
    "raise_direct",
    "rebuild_error",
    "submitted_at",
    "unwrap",
]


def submitted_at(result_id: str) -> float | None:
    """A job id starts with the controller's clock in milliseconds (16 hex digits)."""
    if len(result_id) != 40:
        return None
    try:
        return int(result_id[:16], 16) / 1000
    except ValueError:
        return None


def rebuild_error(engine_id: int, content: Any, method: str) -> BaseException | Printed:
    """The exception an error part stands for, with a RemoteTraceback as its cause
    (wrapped in a :class:`Printed` when the command printed before it failed)."""
    report = ErrorReport.from_bytes(content)
    exc: BaseException | None = None
    if report.traceback is None:  # made by the controller: it names an error class
        exc = errors.BY_NAME.get(report.ename, errors.KernelError)(report.evalue)
        if not isinstance(exc, errors.EngineError):
            return exc  # the seed's "[Engine Exception]QueueCleared: ..." has no engine
    elif report.exc is not None:
        try:
            exc = loads(report.exc)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = errors.RemoteError(report.ename, report.evalue, report.traceback or "")
    where = report.engine_id if report.engine_id is not None else engine_id
    exc.__cause__ = errors.RemoteTraceback(where, report.method or method, report.traceback)
    if not hasattr(exc, "_render_traceback_"):  # IPython shows the engine's traceback
        try:
            exc._render_traceback_ = errors.render_remote_traceback(exc)  # type: ignore[attr-defined]
        except AttributeError:
            pass
    if report.stdout or report.stderr:
        return Printed(exc, report.stdout or "", report.stderr or "")
    return exc


def decode_part(part: PartHeader, content: Any, buffers: list[Any], method: str) -> Any:
    """One engine's value; a failure becomes its exception. A function's value that
    comes with what it printed is a :class:`Printed` (see :func:`unwrap`)."""
    if part.sizes is not None:
        buffers = chunks.assemble(part.sizes, buffers, part.piece)
    if part.status == P.STATUS_ERROR:
        return rebuild_error(part.engine_id, content, method)
    if part.enc == P.MSGPACK:
        return unpack(content)
    try:
        if part.enc == P.SLICES:
            return slices.load(buffers)
        value = loads(content, buffers)
    except Exception as e:
        return _not_unpickled(part, e, method)
    if type(value) is list:  # a gather's part, say: if long, its arenas stay mapped for
        warm.keep(value)  # the next one (slices do it themselves)
    return value


def _not_unpickled(part: PartHeader, e: Exception, method: str) -> errors.SerializationError:
    """What stands for an engine's value that does not unpickle here."""
    err = errors.SerializationError(f"cannot unpickle the result of engine {part.engine_id}: {e}")
    err.__cause__ = errors.RemoteTraceback(part.engine_id, method)
    return err


def unwrap(value: Any) -> tuple[Any, tuple[str, str] | None]:
    """A decoded value and what its function printed (None: nothing)."""
    if type(value) is Printed:
        return value.value, (value.stdout, value.stderr)
    return value, None


def decode_result(
    msg: Message, method: str
) -> tuple[list[Any], list[PartHeader], list[tuple[str, str] | None]]:
    """The per-target values of a result message (failures as exceptions), its part
    headers, and what each engine printed."""
    wire = msg.header["parts"]
    if len(wire) == 1:  # one engine: the most common answer, decoded without the loop
        part = PartHeader.from_wire(wire[0])
        if part.enc != P.SLICES or "raw" not in msg.header:  # (raw slices: see below)
            ((content, buffers),) = P.split_parts([part.nframes], msg.buffers)
            value, printed = unwrap(decode_part(part, content, buffers, method))
            return [value], [part], [printed]
    parts = [PartHeader.from_wire(p) for p in wire]
    if len(msg.buffers) == len(parts):  # perhaps one frame per part: the quick way
        quick = _decode_plain(parts, msg.buffers, method)
        if quick is not None:
            return quick
    frames = P.split_parts([p.nframes for p in parts], msg.buffers)
    unsigned = _raw_slices(msg.header.get("raw"), parts)
    values: list[Any] = []
    outputs: list[tuple[str, str] | None] = []
    for i, (p, (c, b)) in enumerate(zip(parts, frames, strict=True)):
        if i in unsigned:  # a slice is a pickle: never unpickled unless hashed
            err = errors.SerializationError("a slice of the answer came unsigned")
            values.append(err)
            outputs.append(None)
            continue
        value, printed = unwrap(decode_part(p, c, b, method))
        values.append(value)
        outputs.append(printed)
    return values, parts, outputs


def _decode_plain(
    parts: list[PartHeader], contents: list[Any], method: str
) -> tuple[list[Any], list[PartHeader], list[tuple[str, str] | None]] | None:
    """:func:`decode_result` of an answer whose every part is its content frame alone
    (a small pickled value, or an error report), as an engine answers ``execute`` or a
    small ``apply``: at 128 engines, 128 parts taken in one loop. None when a part is
    not one such (the general way then decodes it)."""
    if any(p.nframes or p.sizes is not None or p.enc == P.SLICES for p in parts):
        return None  # (looked at before any is decoded: nothing is unpickled twice)
    values: list[Any] = []
    outputs: list[tuple[str, str] | None] = []
    ok, pickled, frame = P.STATUS_OK, P.PICKLE, zmq.Frame
    for p, c in zip(parts, contents):
        # (a part that holds a pickle in the stream, as most do, is unpickled here, as
        # decode_part and loads would, without their three calls for each of 128 parts;
        # an error report or a shared-memory envelope goes the general way)
        data = c.buffer if type(c) is frame else c
        if p.status == ok and p.enc == pickled and data and data[0] != shm.ENVELOPE_START:
            try:
                value = pickle.loads(data)
            except Exception as e:
                value = _not_unpickled(p, e, method)
            else:
                if type(value) is list:  # as decode_part
                    warm.keep(value)
        else:
            value = decode_part(p, c, [], method)
        if type(value) is Printed:
            values.append(value.value)
            outputs.append((value.stdout, value.stderr))
        else:
            values.append(value)
            outputs.append(None)
    return values, parts, outputs


def _raw_slices(raw: Any, parts: list[PartHeader]) -> set[int]:
    """The parts in slices (``SLICES``) that have a frame the header calls ``raw``."""
    if not raw or not any(p.enc == P.SLICES for p in parts):
        return set()
    raw_frames = set(raw) if isinstance(raw, list) else None  # None: all (raw is True)
    out = set()
    pos = 0
    for i, p in enumerate(parts):
        frames = range(pos + 1, pos + 1 + p.nframes)  # its buffers, after its content
        if p.enc == P.SLICES and (raw_frames is None or raw_frames.intersection(frames)):
            out.add(i)
        pos += 1 + p.nframes
    return out


def decode_parts(msg: Message, method: str) -> list[Any]:
    """The per-target values of a result message; failures become exceptions."""
    return decode_result(msg, method)[0]


def metadata(
    result_id: str,
    parts: Sequence[PartHeader],
    outputs: Sequence[tuple[str, str] | None],
    values: Sequence[Any],
) -> list[dict[str, Any]]:
    """One dict per engine: where and when it ran, and what it printed."""
    submitted = submitted_at(result_id)
    out = []
    for part, printed, value in zip(parts, outputs, values, strict=True):
        if printed is None and type(value) is dict:  # execute's result dict keeps its own
            printed = (value.get("stdout", ""), value.get("stderr", ""))
        out.append(
            {
                "engine_id": part.engine_id,
                "status": part.status,
                "submitted": submitted,
                "started": part.started,
                "completed": part.completed,
                "duration": part.elapsed,
                "stdout": printed[0] if printed else "",
                "stderr": printed[1] if printed else "",
            }
        )
    return out


def raise_direct(msg: Message) -> None:
    """Raise the error a controller answered directly (bad targets, unknown ids...)."""
    if msg.type == P.ERROR:
        ename = msg.header.get("ename", "")
        cls: type[Exception] = (
            IndexError if ename == "IndexError" else errors.BY_NAME.get(ename, errors.KernelError)
        )
        raise cls(msg.header.get("evalue", ""))


def check(values: list[Any], method: str) -> list[Any]:
    return errors.collect_exceptions(values, method)
