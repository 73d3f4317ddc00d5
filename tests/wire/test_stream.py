"""The direct path's transport (wire/stream.py) over real Unix sockets: messages arrive
whole and in order however the bytes are cut, large ones are read in place, what the
peer does not take waits in the queue, a closed peer and bytes that are no message
stream are told apart. Property-based where the input space is large (hypothesis)."""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import HANG
from hypothesis import given, settings
from hypothesis import strategies as st

from multiengine.wire import stream


@pytest.fixture
def pair() -> Iterator[tuple[stream.Connection, stream.Connection]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left, right = stream.Connection(a), stream.Connection(b)
    try:
        yield left, right
    finally:
        left.close()
        right.close()


def read_n(conn: stream.Connection, n: int, other: stream.Connection | None = None) -> list[Any]:
    """``n`` messages from ``conn``, flushing ``other`` (the sender) as its peer reads."""
    got: list[Any] = []
    p = select.poll()
    p.register(conn.fd, select.POLLIN)
    while len(got) < n:
        if other is not None and other.wants_write:
            other.flush()
        if not p.poll(HANG * 1000 if other is None else 10):
            if other is None:
                raise AssertionError(f"only {len(got)} of {n} messages came")
            continue
        got += conn.read()
    return got


def as_bytes(frames: list[Any]) -> list[bytes]:
    return [bytes(f) for f in frames]


frames_st = st.lists(st.binary(max_size=300), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(messages=st.lists(frames_st, min_size=1, max_size=12), cuts=st.lists(st.integers(1, 97)))
def test_messages_arrive_whole_and_in_order_however_the_bytes_are_cut(
    messages: list[list[bytes]], cuts: list[int]
) -> None:
    """The sender's bytes written in arbitrary pieces (``cuts``): the reader hands out
    exactly the messages sent, each once it is whole."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reader = stream.Connection(b)
    try:
        wire = b"".join(
            struct.pack(f"<I{len(m)}Q", len(m), *map(len, m)) + b"".join(m) for m in messages
        )
        got: list[list[bytes]] = []
        pos, i = 0, 0
        while pos < len(wire):
            step = cuts[i % len(cuts)] if cuts else len(wire)
            a.sendall(wire[pos : pos + step])
            pos += step
            i += 1
            got += [as_bytes(f) for f in reader.read()]
        assert got == messages
        assert reader.read() == []  # nothing more, and not closed
    finally:
        a.close()
        reader.close()


def test_a_large_message_is_read_in_place_and_its_large_frames_are_views(
    pair: tuple[stream.Connection, stream.Connection],
) -> None:
    left, right = pair
    big = os.urandom(5 * stream.DIRECT_READ_ABOVE)
    small = b"head"
    assert left.send([small, big, b"tail"]) is True
    (msg,) = read_n(right, 1, left)
    assert as_bytes(msg) == [small, big, b"tail"]
    assert type(msg[0]) is bytes and type(msg[1]) is memoryview  # no copy of the large one
    assert not left.wants_write and left.queued == 0


def test_what_the_peer_does_not_take_waits_in_the_queue_in_order(
    pair: tuple[stream.Connection, stream.Connection],
) -> None:
    """A sender never blocks: with a peer that does not read, its messages queue up
    (zero-copy views, counted in ``queued``), and go, in order, as the peer reads."""
    left, right = pair
    chunk = os.urandom(256 * 1024)
    sent = [[b"%d" % i, chunk] for i in range(40)]  # 10 MB: more than the socket holds
    for m in sent:
        assert left.send(m) is True
    assert left.wants_write and left.queued > 0
    got = read_n(right, len(sent), left)
    assert [as_bytes(m) for m in got] == sent
    assert not left.wants_write and left.queued == 0


def test_a_send_with_a_wait_finishes_while_the_peer_reads(
    pair: tuple[stream.Connection, stream.Connection],
) -> None:
    left, right = pair
    big = os.urandom(8 << 20)
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.extend(read_n(right, 1)))
    reader.start()
    assert left.send([b"x", big], wait=HANG) is True
    assert not left.wants_write  # all of it went within the wait
    reader.join(HANG)
    assert as_bytes(got[0]) == [b"x", big]


def test_arrays_and_views_of_any_format_go_as_their_bytes(
    pair: tuple[stream.Connection, stream.Connection],
) -> None:
    left, right = pair
    arr = np.arange(300_000, dtype=np.float64).reshape(1000, 300)
    assert left.send([b"h", arr, memoryview(b"abcdef")[2:]]) is True
    (msg,) = read_n(right, 1, left)
    assert np.array_equal(np.frombuffer(msg[1], dtype=np.float64).reshape(1000, 300), arr)
    assert bytes(msg[2]) == b"cdef"


def test_more_frames_than_one_sendmsg_takes(
    pair: tuple[stream.Connection, stream.Connection],
) -> None:
    left, right = pair
    frames = [b"%d" % i for i in range(stream.IOV_AT_MOST * 3)]
    assert left.send(frames) is True
    (msg,) = read_n(right, 1, left)
    assert as_bytes(msg) == frames


def test_a_closed_peer_is_closed_after_what_it_sent_is_read(
    pair: tuple[stream.Connection, stream.Connection],
) -> None:
    left, right = pair
    assert left.send([b"last words"]) is True
    left.close()
    assert as_bytes(right.read()[0]) == [b"last words"]
    with pytest.raises(stream.Closed):
        right.read()
    assert right.closed
    assert right.send([b"anyone?"]) is False  # nothing to send to


def test_sending_to_a_peer_that_has_gone_says_so(
    pair: tuple[stream.Connection, stream.Connection],
) -> None:
    left, right = pair
    right.close()
    assert left.send([b"x" * 100]) is False or left.send([b"y"]) is False
    assert left.broken and not left.wants_write  # (closed once its owner reads the end)
    with pytest.raises(stream.Closed):
        left.read()
    assert left.closed


@pytest.mark.parametrize(
    "junk",
    [
        struct.pack("<I", 0) + b"rest",  # no frames
        struct.pack("<I", stream.MAX_FRAMES + 1) + b"rest",  # absurdly many
        struct.pack("<IQ", 1, stream.MAX_MESSAGE + 1),  # absurdly long
    ],
    ids=["no-frames", "too-many-frames", "too-long"],
)
def test_bytes_that_are_no_message_stream_close_the_connection(junk: bytes) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reader = stream.Connection(b)
    try:
        a.sendall(junk)
        with pytest.raises(stream.StreamError):
            reader.read()
        assert reader.closed
        a.settimeout(HANG)
        assert a.recv(1) == b""  # the peer sees it closed
    finally:
        a.close()
        reader.close()


def test_a_length_claimed_and_not_sent_is_not_allocated(
    pair: tuple[stream.Connection, stream.Connection],
) -> None:
    """Only what comes takes memory: a message that claims a terabyte and sends 64 KB
    waits, holding 64 KB, and the connection stays usable for nothing else (its next
    bytes are that message's)."""
    left, right = pair
    left.sock.sendall(struct.pack("<IQ", 1, stream.MAX_MESSAGE - 1) + b"x" * 65536)
    got: list[Any] = []
    while not got and len(right._in) < 65536 + 12:
        select.select([right.fd], [], [], HANG)
        got += right.read()
    assert got == [] and not right.closed
    assert right._big is None and len(right._in) == 65536 + 12


def test_a_listener_takes_connections_and_its_socket_file_is_private(tmp_path: Path) -> None:
    path = str(tmp_path / "d")
    listener = stream.Listener(path)
    try:
        assert listener.url == "unix://" + path
        assert stream.path_of(listener.url) == path and stream.path_of("ipc:///x") is None
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert listener.accept() is None and not listener.knocking()
        client = stream.connect(listener.url)
        select.select([listener.fd], [], [], HANG)
        assert listener.knocking()
        server = listener.accept()
        assert server is not None
        try:
            assert client.send([b"ping"])
            assert as_bytes(read_n(server, 1)[0]) == [b"ping"]
            assert server.send([b"pong"])
            assert as_bytes(read_n(client, 1)[0]) == [b"pong"]
        finally:
            client.close()
            server.close()
    finally:
        listener.close()
    assert not os.path.exists(path)  # closing removes the socket file
    with pytest.raises(OSError):
        stream.connect("unix://" + path)  # nothing listens there now
