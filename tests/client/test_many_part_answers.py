"""Decoding an answer of many engines: a part that is one small pickle (execute, a
small apply) takes the quick loop, and every value, failure and printed text comes out
as the part-by-part way makes it. Pure logic on signed messages; the real-cluster
tests (test_result_list.py, test_errors.py) cover the same answers end to end."""

from __future__ import annotations

import pickle
from typing import Any

import zmq

from multiengine import errors
from multiengine.client.answers import decode_part, decode_result, unwrap
from multiengine.wire import protocol as P
from multiengine.wire.message import Message, Signer
from multiengine.wire.protocol import ErrorReport, PartHeader, Printed

KEY = b"k" * 32


def answer(parts: list[tuple[str, str, bytes, list[bytes]]]) -> Message:
    """A ``result`` as the controller sends it, received as zmq Frames."""
    heads, frames = [], []
    for i, (status, enc, content, buffers) in enumerate(parts):
        head = PartHeader(i, status, enc, len(buffers), None, None, 1.0, 2.0, 1e-5)
        heads.append(head.to_wire())
        frames += [content, *buffers]
    signer = Signer(KEY)
    wire = signer.frames({"t": P.RESULT, "id": 1, "job": "j", "parts": heads}, b"", frames)
    return signer.parse([zmq.Frame(f) for f in wire])


def one_by_one(msg: Message) -> tuple[list[Any], list[Any]]:
    """What decoding each part on its own gives (values, printed texts)."""
    heads = [PartHeader.from_wire(h) for h in msg.header["parts"]]
    split = P.split_parts([h.nframes for h in heads], msg.buffers)
    pairs = [unwrap(decode_part(h, c, b, "execute")) for h, (c, b) in zip(heads, split)]
    return [v for v, _ in pairs], [p for _, p in pairs]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, BaseException):
        return type(a) is type(b) and str(a) == str(b)
    return bool(a == b)


def check_like_one_by_one(msg: Message) -> list[Any]:
    values, heads, outputs = decode_result(msg, "execute")
    expected_values, expected_outputs = one_by_one(msg)
    assert all(same(v, e) for v, e in zip(values, expected_values, strict=True))
    assert outputs == expected_outputs
    assert [tuple(h) for h in heads] == [tuple(h) for h in msg.header["parts"]]
    assert all(type(h) is PartHeader for h in heads)
    return values


def test_execute_answer_of_128_engines() -> None:
    results = [{"input": {"raw": "pass"}, "number": 3, "id": i} for i in range(128)]
    msg = answer([(P.STATUS_OK, P.PICKLE, pickle.dumps(r, protocol=5), []) for r in results])
    assert check_like_one_by_one(msg) == results


def test_failures_printed_text_and_bad_pickles_among_plain_parts() -> None:
    report = ErrorReport("ZeroDivisionError", "division by zero", "Traceback...", "apply", 1)
    printed = Printed(42, "hello\n", "")
    msg = answer(
        [
            (P.STATUS_OK, P.PICKLE, pickle.dumps(1), []),
            (P.STATUS_ERROR, P.MSGPACK, report.to_bytes(), []),
            (P.STATUS_OK, P.PICKLE, pickle.dumps(printed), []),
            (P.STATUS_OK, P.PICKLE, b"\x80\x05garbage", []),  # a pickle that does not load
            (P.STATUS_OK, P.PICKLE, b"\x00not a pickle at all", []),  # nor an shm envelope
        ]
    )
    values = check_like_one_by_one(msg)
    assert values[0] == 1
    assert isinstance(values[1], errors.RemoteError) and values[1].ename == "ZeroDivisionError"
    assert values[2] == 42
    assert isinstance(values[3], errors.SerializationError)
    assert isinstance(values[4], errors.SerializationError)
    assert decode_result(msg, "execute")[2][2] == ("hello\n", "")


def test_parts_with_buffers_are_decoded_the_general_way() -> None:
    import numpy as np

    from multiengine.wire.serialize import dumps

    content, buffers = dumps(np.arange(20000))
    msg = answer(
        [
            (P.STATUS_OK, P.PICKLE, pickle.dumps("small"), []),
            (P.STATUS_OK, P.PICKLE, content, [bytes(b) for b in buffers]),
        ]
    )
    values, _, _ = decode_result(msg, "pull")
    assert values[0] == "small"
    assert (values[1] == np.arange(20000)).all()
