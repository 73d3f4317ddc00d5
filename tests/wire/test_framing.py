"""Signed message framing: round trips, and every kind of tampering rejected."""

from __future__ import annotations

import pickle

import msgpack
import pytest
import zmq

from multiengine.wire.message import (
    DELIM,
    ReplayGuard,
    Signer,
    WireError,
    check_digests,
    check_message_digests,
    digests,
)
from multiengine.wire.protocol import STAMP_FIELDS

pytestmark = pytest.mark.usefixtures("any_header")  # made-up and malformed messages

KEY = b"0123456789abcdef0123456789abcdef"
HEADER = {"t": "submit", "id": 7, "targets": [0, 2]}
CONTENT = b"some content"


def unstamped(header: dict[str, object]) -> dict[str, object]:
    """A received header without the replay stamp every signed header carries."""
    return {k: v for k, v in header.items() if k not in STAMP_FIELDS}


def make_frames(signer: Signer | None = None) -> list[bytes]:
    signer = signer or Signer(KEY)
    frames = signer.frames(
        dict(HEADER), CONTENT, [b"buffer-one", bytearray(b"buffer-two!")], idents=[b"client-1"]
    )
    return [bytes(f) for f in frames]


def delimiter_index(frames: list[bytes]) -> int:
    return next(i for i, f in enumerate(frames) if f.startswith(DELIM))


def content_index(frames: list[bytes]) -> int:
    return frames.index(CONTENT)


def flip(frames: list[bytes], index: int, pos: int) -> list[bytes]:
    out = list(frames)
    ba = bytearray(out[index])
    ba[pos] ^= 0x01
    out[index] = bytes(ba)
    return out


def test_frames_parse_round_trip():
    frames = make_frames()
    assert frames[0] == b"client-1"
    msg = Signer(KEY).parse(frames)
    assert msg.idents == [b"client-1"]
    assert unstamped(msg.header) == HEADER
    assert set(STAMP_FIELDS) <= set(msg.header)
    assert msg.type == "submit"
    assert msg.content == CONTENT
    assert [bytes(b) for b in msg.buffers] == [b"buffer-one", b"buffer-two!"]


def test_round_trip_without_idents_or_buffers():
    s = Signer(KEY)
    msg = s.parse(s.frames({"t": "ping"}))
    assert msg.idents == []
    assert unstamped(msg.header) == {"t": "ping"}
    assert msg.content == b""
    assert msg.buffers == []


def test_round_trip_with_several_routing_identities():
    """A message relayed through more than one ROUTER keeps every identity, in order."""
    s = Signer(KEY)
    msg = s.parse(s.frames({"t": "ping"}, b"c", [b"b1"], idents=[b"first", b"second"]))
    assert msg.idents == [b"first", b"second"]
    assert msg.content == b"c" and [bytes(b) for b in msg.buffers] == [b"b1"]


def test_round_trip_over_zmq_frames():
    ctx = zmq.Context()
    a = ctx.socket(zmq.PAIR)
    b = ctx.socket(zmq.PAIR)
    try:
        a.bind("inproc://wire-test-roundtrip")
        b.connect("inproc://wire-test-roundtrip")
        s = Signer(KEY)
        a.send_multipart(s.frames({"t": "x", "n": 1}, b"payload", [b"b" * 100]), copy=False)
        msg = s.parse(b.recv_multipart(copy=False))
        assert unstamped(msg.header) == {"t": "x", "n": 1}
        assert bytes(msg.content.buffer) == b"payload"
        assert bytes(msg.buffers[0].buffer) == b"b" * 100
        big = b"c" * 10_000
        a.send_multipart(s.frames({"t": "x"}, big), copy=False)
        assert bytes(s.parse(b.recv_multipart(copy=False)).content.buffer) == big
    finally:
        a.close(0)
        b.close(0)
        ctx.term()


def test_flipped_byte_in_header_is_rejected():
    frames = make_frames()
    index = delimiter_index(frames)
    start = len(DELIM) + 32
    assert unstamped(msgpack.unpackb(frames[index][start:])) == HEADER
    for pos in range(start, len(frames[index])):
        with pytest.raises(WireError):
            Signer(KEY).parse(flip(frames, index, pos))


def test_flipped_byte_in_signature_is_rejected():
    """The signature is the 32 bytes that follow the delimiter (whatever the framing)."""
    frames = make_frames()
    d = delimiter_index(frames)
    positions = [(i, p) for i in range(d, content_index(frames)) for p in range(len(frames[i]))]
    signature = positions[len(DELIM) : len(DELIM) + 32]
    assert len(signature) == 32
    for index, pos in signature:
        with pytest.raises(WireError):
            Signer(KEY).parse(flip(frames, index, pos))


def test_flipped_byte_in_content_is_rejected():
    frames = make_frames()
    c = content_index(frames)
    for pos in (0, len(CONTENT) // 2, len(CONTENT) - 1):
        with pytest.raises(WireError):
            Signer(KEY).parse(flip(frames, c, pos))


def test_any_flipped_byte_of_the_signed_part_is_rejected():
    frames = make_frames()
    for index in range(delimiter_index(frames), content_index(frames) + 1):
        for pos in range(len(frames[index])):
            with pytest.raises(WireError):
                Signer(KEY).parse(flip(frames, index, pos))


@pytest.mark.fault(
    section="hostile-input",
    fault="a message cut short (frames missing, a frame truncated)",
    outcome="dropped and counted: `truncated message` or `bad signature`",
    also=["tests/wire/test_fuzz.py::test_fuzz_the_controller"],
)
def test_truncated_message_is_rejected():
    frames = make_frames()
    d = delimiter_index(frames)
    c = content_index(frames)
    for cut in (
        frames[: d + 1],  # nothing after the delimiter's frame
        frames[:c] + frames[c + 1 :],  # the content frame went missing
        frames[:-1],  # a buffer went missing
        frames[:-1] + [frames[-1][:-1]],  # a buffer got shorter
        frames[:d] + [frames[d][: len(DELIM) + 10]],  # the signature cut short, nothing after it
        frames[: c - 1] + [frames[c - 1][:-1]] + frames[c:],  # the header lost its last byte
    ):
        with pytest.raises(WireError):
            Signer(KEY).parse(cut)


def test_missing_delimiter_is_rejected():
    frames = make_frames()
    d = delimiter_index(frames)
    with pytest.raises(WireError):
        Signer(KEY).parse(frames[:d] + frames[d + 1 :])
    with pytest.raises(WireError):
        Signer(KEY).parse(frames[:d] + [b"XX/1" + frames[d][len(DELIM) :]] + frames[d + 1 :])
    with pytest.raises(WireError):
        Signer(KEY).parse([])


@pytest.mark.fault(
    section="hostile-input",
    fault="unsigned, forged, or signed with another key",
    outcome="dropped and counted: `bad signature (forged, garbled, or signed with another key)`",
    also=[
        "tests/wire/test_framing.py::test_any_flipped_byte_of_the_signed_part_is_rejected",
        "tests/wire/test_fuzz.py::test_fuzz_the_controller",
    ],
)
def test_other_key_is_rejected():
    frames = make_frames(Signer(b"another key, same length 32 byt"))
    with pytest.raises(WireError):
        Signer(KEY).parse(frames)


@pytest.mark.parametrize("header", [{"no-type": 1}, {"t": ["a", "list"]}, {"t": 5}, {"t": None}])
def test_header_without_type_is_rejected(header: dict[str, object]) -> None:
    # a type that is not a string (found by the fuzzer) broke the handler lookup
    s = Signer(KEY)
    with pytest.raises(WireError, match="not a map with a message type"):
        s.parse(s.frames(header))


def test_empty_key_is_refused():
    with pytest.raises(ValueError):
        Signer(b"")


def test_pickle_streams_in_buffer_positions_are_signed() -> None:
    """A per-engine pickle (scatter/map parts, results) sits among the buffers: it must
    be hashed, so swapping it for another pickle of the same length is caught; only the
    buffers the header lists as raw data are covered by their length alone."""

    signer = Signer(b"k" * 32)
    part0, part1 = pickle.dumps(("aaaa",)), pickle.dumps(("bbbb",))
    raw_data = b"\x00" * 64
    header = {"t": "submit", "parts": [0, 1], "raw": [2]}
    frames = signer.frames(header, b"", [part0, part1, raw_data])
    # (each check parses the same stamp again: with a guard of its own, else it is a replay)
    assert signer.parse(frames, ReplayGuard()).buffers[1] == part1
    evil = pickle.dumps(("cccc",))
    assert len(evil) == len(part1)
    with pytest.raises(WireError):
        signer.parse(frames[:3] + [evil, raw_data], ReplayGuard())
    # the raw buffer is covered by its length only (it never carries code) ...
    assert signer.parse(frames[:4] + [b"\x01" * 64], ReplayGuard()).buffers[2] == b"\x01" * 64
    # ... but not its length, and a header that lies about which buffers are raw is forged
    with pytest.raises(WireError):
        signer.parse(frames[:4] + [b"\x01" * 65], ReplayGuard())
    forged_head = frames[0][:4] + frames[0][4:36] + msgpack.packb({**header, "raw": True})
    with pytest.raises(WireError):
        signer.parse([forged_head, *frames[1:3], evil, raw_data], ReplayGuard())


@pytest.mark.fault(
    section="hostile-input",
    fault=(
        "a signed message with frames added (empty ones too), split, joined, or bytes moved "
        "between frames"
    ),
    outcome=(
        "dropped and counted (`bad signature`): every frame's length is signed (docs/protocol.md "
        "§2). The fuzzer found that appending empty frames used to leave the signature valid"
    ),
    also=["tests/wire/test_fuzz.py::test_fuzz_an_engine"],
)
def test_frames_cannot_be_added_split_or_joined() -> None:
    """Every frame's length is signed: an empty frame appended, a frame split in two or
    two joined, or bytes moved from one frame to the next, is forged (before the lengths
    were signed, the fuzzer of test_fuzz.py got a message with empty frames appended
    past the check)."""
    frames = make_frames()
    c = content_index(frames)
    a, b = frames[c + 1], frames[c + 2]
    for forged in (
        frames + [b""],  # an empty frame appended
        frames + [b""] * 1000,
        frames[: c + 1] + [b"", a, b],  # an empty frame inserted
        frames[:c] + [CONTENT[:4], CONTENT[4:]] + frames[c + 1 :],  # the content split
        frames[:c] + [CONTENT + a, b],  # the content and a buffer joined
        frames[: c + 1] + [a + b[:1], b[1:]],  # a byte moved between buffers
    ):
        with pytest.raises(WireError, match="bad signature"):
            Signer(KEY).parse(forged, ReplayGuard())
    assert Signer(KEY).parse(frames, ReplayGuard()).buffers == [a, b]


def documented_signature(header: bytes, frames: list[object], raw: object = None) -> bytes:
    """The signature as docs/protocol.md §2 spells it: HMAC-SHA256 over the header,
    then each later frame's length (8 bytes, little-endian) and bytes; of a raw buffer
    (``raw``: True for all, or buffer indices) only the length."""
    import hashlib
    import hmac
    import struct

    h = hmac.new(KEY, header, hashlib.sha256)
    for i, f in enumerate(frames):
        data = bytes(memoryview(f).cast("B"))  # type: ignore[arg-type]
        h.update(struct.pack("<Q", len(data)))
        if i and (raw is True or (isinstance(raw, list) and i - 1 in raw)):
            continue
        h.update(data)
    return h.digest()


@pytest.mark.parametrize(
    "content, buffers, raw",
    [
        (b"small content", [], None),  # most messages: hashed in one go
        (zmq.Frame(b"a received content"), [], None),
        (b"", [], None),
        (b"x" * 20000, [], None),  # a large content: hashed in place
        (b"", [b"part %d" % i for i in range(128)], None),  # 128 parts: C loops
        (b"", [zmq.Frame(b"part %d" % i) for i in range(128)], None),
        (zmq.Frame(b""), [zmq.Frame(b"p"), b"q", *[b"r"] * 10], None),
        (b"", [b"p"] * 10 + [b"y" * 20000], None),  # one large among many
        (b"", [b"p"] * 10 + [bytearray(b"q")], None),  # not all bytes or Frames
        (b"", [b"p"] * 10, [3]),  # a raw buffer among many: its length only
        (b"", [b"p"] * 10, True),
    ],
)
def test_signature_is_the_documented_one(content: object, buffers: list[object], raw: object):
    """Whichever way the frames are hashed (joined, in C loops, in place), the signature
    is the one the protocol documents, and the message parses."""
    signer = Signer(KEY)
    header = msgpack.packb({"t": "result"})
    assert signer.signature(header, content, buffers, raw) == documented_signature(
        header, [content, *buffers], raw
    )
    head = {"t": "result"} if raw is None else {"t": "result", "raw": raw}
    msg = signer.parse(signer.frames(head, content, buffers), ReplayGuard())
    assert [bytes(b) for b in msg.buffers] == [bytes(b) for b in buffers]  # type: ignore[call-overload]


def test_a_part_changed_among_many_is_rejected():
    """An answer of 128 small parts (hashed in one join): any part changed, two swapped,
    or one moved to the next, is forged."""
    signer = Signer(KEY)
    parts = [pickle.dumps({"number": i}) for i in range(128)]
    frames = signer.frames({"t": "result"}, b"", parts)
    assert signer.parse(frames, ReplayGuard()).buffers == parts
    swapped = list(frames)
    swapped[5], swapped[6] = swapped[6], swapped[5]
    moved = list(frames)
    moved[5], moved[6] = moved[5] + moved[6][:1], moved[6][1:]
    for forged in (flip(frames, 70, 3), swapped, moved, frames[:-1], frames + [b""]):
        with pytest.raises(WireError, match="bad signature"):
            signer.parse(forged, ReplayGuard())


def test_one_message_sent_to_each_engine_arrives_whole_at_each() -> None:
    """The controller's fan-out (send_to_each): one signed message to several DEALERs on
    a ROUTER, small parts copied and a large one zero-copy, reaches each as it was."""
    from multiengine.wire.message import recv_frames, send_to_each

    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealers = []
    try:
        for i in range(3):
            d = ctx.socket(zmq.DEALER)
            d.setsockopt(zmq.IDENTITY, b"e-%d" % i)
            d.connect(f"tcp://127.0.0.1:{port}")
            d.send(b"hello")  # the router knows each identity once its first message came
            dealers.append(d)
        for _ in dealers:
            assert router.poll(10_000)
            router.recv_multipart()
        signer = Signer(KEY)
        large = bytearray(b"L" * 100_000)
        frames = signer.frames({"t": "cmd", "cmd": 1}, b"content", [large, b"tail"])
        send_to_each(router, [b"e-2", b"e-0", b"e-1"], frames)
        for d in dealers:
            assert d.poll(10_000)
            msg = signer.parse(recv_frames(d), ReplayGuard())
            assert msg.header["cmd"] == 1 and bytes(msg.content) == b"content"
            assert [bytes(b) for b in msg.buffers] == [bytes(large), b"tail"]
    finally:
        for s in (router, *dealers):
            s.close(linger=0)
        ctx.term()


def _digested(buffers: list[bytes], t: str = "chunk") -> tuple[Signer, list[bytes]]:
    signer = Signer(KEY)
    head = {"t": t, "cmd": 3, "dg": digests(buffers)}
    return signer, [bytes(f) for f in signer.frames(head, b"", buffers)]


def test_digested_buffers_are_signed_by_length_and_checked_against_their_digests() -> None:
    """``dg`` (docs/protocol.md §2): the signature covers the buffers' lengths and the
    header with their digests; the receiver checks each buffer against its digest."""
    import hashlib

    data = [b"a slice " * 1000]
    signer, frames = _digested(data)
    head = msgpack.packb(dict(msgpack.unpackb(frames[0][36:])))
    assert frames[0][4:36] == documented_signature(head, [b"", *data], True)  # length only
    msg = signer.parse(frames, ReplayGuard())
    assert msg.header["dg"] == [hashlib.sha256(data[0]).digest()] and msg.buffers == data

    changed = [*frames[:-1], frames[-1][:-1] + b"!"]  # the same length, one byte changed
    with pytest.raises(WireError, match="does not match its digest"):
        signer.parse(changed, ReplayGuard())
    # a controller relays a chunk unchecked (its receiver checks), nothing else
    relayed = signer.parse(changed, ReplayGuard(), deferred=("chunk",))
    with pytest.raises(WireError, match="does not match its digest"):
        check_digests(relayed.header["dg"], relayed.buffers)
    signer, reply = _digested(data, t="reply")
    changed_reply = [*reply[:-1], reply[-1][:-1] + b"!"]
    with pytest.raises(WireError, match="does not match its digest"):
        signer.parse(changed_reply, ReplayGuard(), deferred=("chunk",))
    # the digests are signed: another digest for the changed bytes is a forgery
    other = dict(msgpack.unpackb(frames[0][36:]), dg=digests([changed[-1]]))
    forged = [frames[0][:36] + msgpack.packb(other), *changed[1:]]
    with pytest.raises(WireError, match="bad signature"):
        signer.parse(forged, ReplayGuard(), deferred=("chunk",))


@pytest.mark.parametrize(
    "dg",
    [
        "not a list",
        [],  # one buffer, no digest
        [b"\0" * 31],  # not a SHA-256 digest
        [b"\0" * 32, b"\0" * 32],  # more digests than buffers
        [7],
    ],
)
def test_a_malformed_digest_list_is_rejected(dg: object) -> None:
    signer = Signer(KEY)
    frames = signer.frames({"t": "chunk", "cmd": 3, "dg": dg}, b"", [b"data"])
    with pytest.raises(WireError, match="malformed digest list"):
        signer.parse(frames, ReplayGuard(), deferred=("chunk",))


@pytest.mark.parametrize("size", [100, 20_000], ids=["small", "large"])
def test_a_digested_content_is_signed_by_length_and_checked_where_it_is_used(size: int) -> None:
    """``cdg`` (docs/protocol.md §2): a ``cmd`` whose pickle is a part the client
    digested. The signature covers the content's length and the header with its digest;
    a receiver that defers the check (an engine, which fails the command instead of
    dropping it) finds a changed content with check_message_digests; the digest is signed.
    A small part too (signing and checking have a quick way for small contents)."""
    import hashlib

    pickle_part = (b"a part of a scatter " * 1000)[:size]
    signer = Signer(KEY)
    head = {"t": "cmd", "cmd": 3, "name": "push", "cdg": hashlib.sha256(pickle_part).digest()}
    frames = [bytes(f) for f in signer.frames(head, pickle_part)]
    packed = msgpack.packb(dict(msgpack.unpackb(frames[0][36:])))
    import hmac
    import struct

    # the header, then the content's length alone
    by_length = hmac.new(KEY, packed + struct.pack("<Q", len(pickle_part)), hashlib.sha256)
    assert frames[0][4:36] == by_length.digest()
    msg = signer.parse(frames, ReplayGuard())
    assert msg.content == pickle_part
    received = signer.parse([zmq.Frame(f) for f in frames], ReplayGuard())  # as from a socket
    assert bytes(received.content) == pickle_part

    changed = [frames[0], pickle_part[:-1] + b"!"]  # the same length, one byte changed
    with pytest.raises(WireError, match="content does not match its digest"):
        signer.parse(changed, ReplayGuard())
    deferred = signer.parse(changed, ReplayGuard(), deferred=("cmd",))
    with pytest.raises(WireError, match="content does not match its digest"):
        check_message_digests(deferred.header, deferred.content, deferred.buffers)
    check_message_digests(msg.header, msg.content, msg.buffers)  # the unchanged one passes

    other = dict(msgpack.unpackb(frames[0][36:]), cdg=hashlib.sha256(changed[1]).digest())
    forged = [frames[0][:36] + msgpack.packb(other), changed[1]]
    with pytest.raises(WireError, match="bad signature"):
        signer.parse(forged, ReplayGuard(), deferred=("cmd",))
    resized = [frames[0], pickle_part + b"!"]  # its length is signed
    with pytest.raises(WireError, match="bad signature"):
        signer.parse(resized, ReplayGuard(), deferred=("cmd",))


@pytest.mark.parametrize("cdg", ["text", b"\0" * 31, 7, [b"\0" * 32]])
def test_a_malformed_content_digest_is_rejected(cdg: object) -> None:
    signer = Signer(KEY)
    frames = signer.frames({"t": "cmd", "cmd": 3, "name": "push", "cdg": cdg}, b"data")
    with pytest.raises(WireError, match="malformed content digest"):
        signer.parse(frames, ReplayGuard(), deferred=("cmd",))
