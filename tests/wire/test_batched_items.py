"""The items of ``cmds`` and ``replies`` (several task commands or replies in one
message): one encoding each, and malformed ones refused with ProtocolViolation."""

from __future__ import annotations

import pytest

from multiengine.wire import protocol as P
from multiengine.wire.protocol import BatchedCmd, BatchedReply


def test_a_batched_command_is_the_cmd_header_it_stands_for() -> None:
    item = BatchedCmd(7, "task", 2, 1.5, True)
    assert BatchedCmd.from_wire(item.to_wire()) == item
    assert item.header() == {"t": P.CMD, "cmd": 7, "name": "task", "tl": 1.5, "live": True}
    assert BatchedCmd(8, "task", 0).header() == {"t": P.CMD, "cmd": 8, "name": "task"}
    P.check_header(item.header())


def test_a_batched_reply_round_trips() -> None:
    item = BatchedReply(9, P.STATUS_OK, P.PICKLE, 0.000012, None, 0)
    assert BatchedReply.from_wire(item.to_wire()) == item


@pytest.mark.parametrize(
    "wire", ["x", [1, "task", 0], [1, 2, 0, None, False], [1, "task", "0", None, False]]
)
def test_a_malformed_batched_command_is_refused(wire: object) -> None:
    with pytest.raises(P.ProtocolViolation):
        BatchedCmd.from_wire(wire)


@pytest.mark.parametrize("wire", ["abcdef", [1, "ok", "p", 0.1, None], [1, 2, "p", 0, None, 0]])
def test_a_malformed_batched_reply_is_refused(wire: object) -> None:
    with pytest.raises(P.ProtocolViolation):
        BatchedReply.from_wire(wire)
