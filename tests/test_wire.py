"""Unit tests with no cluster: signed messages, serialization, ids, partitions, connection files.

Covers seed-tests §E (testPickleSerialized, testNDArraySerialized,
testRegisterUnregisterMultipleEngines), seed-system §2.7 (block partitions) and
contract §4/§7 (connection files) and decision 9 (functions travel by value).
"""

from __future__ import annotations

import json
import os
import pickle
import stat

import msgpack
import numpy as np
import pytest
import zmq

from multiengine import Serialized, serialize
from multiengine.client.partition import check_dist, join, partition
from multiengine.controller.engines import IdAllocator
from multiengine.errors import ConnectionFileError, KernelError, SerializationError
from multiengine.wire.connection import ConnectionInfo, read_connection_file, write_connection_file
from multiengine.wire.message import DELIM, Signer, WireError
from multiengine.wire.serialize import dumps, loads, rebind_globals


@pytest.fixture(autouse=True)
def any_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests frame made-up message types: no check against the protocol table."""
    monkeypatch.setattr("multiengine.wire.message._CHECK", False)


KEY = b"0123456789abcdef0123456789abcdef"

globala = 3  # a client-side global a pushed function refers to (seed testPushFunctionGlobal)


# ---------------------------------------------------------------- signed messages


HEADER = {"t": "submit", "id": 7, "targets": [0, 2]}
CONTENT = b"some content"


def make_frames(signer: Signer | None = None) -> list[bytes]:
    signer = signer or Signer(KEY)
    frames = signer.frames(
        HEADER, CONTENT, [b"buffer-one", bytearray(b"buffer-two!")], idents=[b"client-1"]
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
    assert msg.header == HEADER
    assert msg.type == "submit"
    assert msg.content == CONTENT
    assert [bytes(b) for b in msg.buffers] == [b"buffer-one", b"buffer-two!"]


def test_round_trip_without_idents_or_buffers():
    s = Signer(KEY)
    msg = s.parse(s.frames({"t": "ping"}))
    assert msg.idents == []
    assert msg.header == {"t": "ping"}
    assert msg.content == b""
    assert msg.buffers == []


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
        assert msg.header == {"t": "x", "n": 1}
        assert bytes(msg.content.buffer) == b"payload"
        assert bytes(msg.buffers[0].buffer) == b"b" * 100
    finally:
        a.close(0)
        b.close(0)
        ctx.term()


def test_flipped_byte_in_header_is_rejected():
    frames = make_frames()
    packed = msgpack.packb(HEADER)
    index = next(i for i, f in enumerate(frames) if packed in f)
    start = frames[index].index(packed)
    for pos in range(start, start + len(packed)):
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


def test_other_key_is_rejected():
    frames = make_frames(Signer(b"another key, same length 32 byt"))
    with pytest.raises(WireError):
        Signer(KEY).parse(frames)


def test_header_without_type_is_rejected():
    s = Signer(KEY)
    with pytest.raises(WireError):
        s.parse(s.frames({"no-type": 1}))


def test_empty_key_is_refused():
    with pytest.raises(ValueError):
        Signer(b"")


# ---------------------------------------------------------------- pickles and out-of-band buffers


def test_large_array_travels_out_of_band_and_arrives_writable():
    arr = np.arange(125_000, dtype=np.float64)  # 1 MB
    data, buffers = dumps({"a": arr, "tag": "x"})
    assert len(data) < 10_000, "the array's bytes must not be inside the pickle stream"
    assert len(buffers) == 1
    assert memoryview(buffers[0]).nbytes == 1_000_000

    ctx = zmq.Context()
    a = ctx.socket(zmq.PAIR)
    b = ctx.socket(zmq.PAIR)
    try:
        a.bind("inproc://wire-test-oob")
        b.connect("inproc://wire-test-oob")
        s = Signer(KEY)
        a.send_multipart(s.frames({"t": "push"}, data, buffers), copy=False)
        msg = s.parse(b.recv_multipart(copy=False))
        value = loads(msg.content, msg.buffers)
    finally:
        a.close(0)
        b.close(0)
        ctx.term()
    got = value["a"]
    assert value["tag"] == "x"
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.float64
    assert got.shape == (125_000,)
    assert np.array_equal(got, np.arange(125_000, dtype=np.float64))
    assert got.flags.writeable
    got[0] = -1.0  # must not raise
    assert got[0] == -1.0


def test_large_bytes_round_trip():
    blob = bytes(range(256)) * 1024
    data, buffers = dumps(blob)
    assert loads(data, [bytes(memoryview(b)) for b in buffers]) == blob


def make_adder(n):
    def add(x):
        return x + n

    return add


def test_lambdas_closures_and_defaults_round_trip():
    def with_defaults(x, y=10, *, z=5):
        return x + y + z

    square = lambda x: x * x  # noqa: E731
    f = loads(*dumps(square))
    assert f(7) == 49
    add3 = loads(*dumps(make_adder(3)))
    assert add3(4) == 7
    g = loads(*dumps(with_defaults))
    assert g(1) == 16
    assert g(1, 2) == 8
    assert g(1, z=0) == 11
    assert g.__defaults__ == (10,)
    assert g.__kwdefaults__ == {"z": 5}


def test_unpicklable_value_raises_serialization_error():
    gen = (i for i in range(3))
    with pytest.raises(SerializationError) as exc:
        dumps({"g": gen})
    assert isinstance(exc.value, pickle.PicklingError)
    assert isinstance(exc.value, KernelError)


# ---------------------------------------------------------------- serialize / Serialized (seed §E)


def test_pickle_serialized():
    obj = {"a": 1.45345, "b": "asdfsdf", "c": 10000}
    s = serialize(obj)
    assert isinstance(s, Serialized)
    assert s.getTypeDescriptor() == "pickle"
    assert s.typeDescriptor == "pickle"
    assert s.getMetadata() == {}
    assert s.unserialize() == {"a": 1.45345, "b": "asdfsdf", "c": 10000}
    assert serialize(obj).getData() == s.getData()


def test_ndarray_serialized():
    arr = np.linspace(0, 1, 1000)
    s = serialize(arr)
    assert s.getTypeDescriptor() == "ndarray"
    md = s.getMetadata()
    assert tuple(md["shape"]) == (1000,)
    assert md["dtype"] == "<f8"
    assert bytes(s.getData()) == arr.tobytes()
    back = s.unserialize()
    assert isinstance(back, np.ndarray)
    assert back.dtype == np.float64
    assert back.shape == (1000,)
    assert np.array_equal(back, np.linspace(0, 1, 1000))


def test_ndarray_serialized_2d_and_non_contiguous():
    arr = np.arange(24, dtype=np.int32).reshape(4, 6)[:, ::2]
    back = serialize(arr).unserialize()
    assert back.shape == (4, 3)
    assert back.dtype == np.int32
    assert back.tolist() == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18, 20, 22]]


def test_zero_length_array_cannot_be_serialized():
    with pytest.raises(SerializationError):
        serialize(np.array([]))


def test_serialized_survives_the_wire():
    for obj in (10, "hi there", 1.2342354, {"p": (1, 2)}):
        s = loads(*dumps(serialize(obj)))
        assert isinstance(s, Serialized)
        assert s.unserialize() == obj
    big = np.arange(100_000, dtype=np.float64)
    data, buffers = dumps(serialize(big))
    back = loads(data, buffers).unserialize()
    assert np.array_equal(back, np.arange(100_000, dtype=np.float64))
    assert back.flags.writeable


# ---------------------------------------------------------------- rebind_globals (decision 9)


def interactive(f):
    """Mark ``f`` as typed at a prompt (module ``__main__``), the case decision 9 covers."""
    f.__module__ = "__main__"
    return f


def test_rebind_globals_uses_engine_namespace():
    @interactive
    def g(x):
        return globala * x

    pushed = loads(*dumps(g))  # as an engine receives it
    ns = {"globala": 99}
    f = rebind_globals(pushed, ns)
    assert f(10) == 990  # the engine's value wins over the client's (3)
    ns["globala"] = 5
    assert f(10) == 50  # later changes on the engine are seen
    assert f.__name__ == "g"


def test_rebind_globals_brings_missing_globals_and_writes_globals_to_namespace():
    @interactive
    def g(x):
        return globala * x

    @interactive
    def setter():
        global zz
        zz = 3

    ns: dict = {}
    f = rebind_globals(loads(*dumps(g)), ns)
    assert f(10) == 30  # the client's value, since the engine had none
    assert ns["globala"] == 3
    rebind_globals(loads(*dumps(setter)), ns)()
    assert ns["zz"] == 3


def test_rebind_globals_keeps_defaults_and_closures():
    @interactive
    def h(x, y=2):
        return x * y + globala

    f = rebind_globals(loads(*dumps(h)), {"globala": 100})
    assert f(5) == 110
    add = rebind_globals(loads(*dumps(make_adder(4))), {})
    assert add(1) == 5


def test_rebind_globals_leaves_functions_of_the_users_modules_alone():
    # a function of a (non-installed) module travels by value with its module's globals;
    # an engine variable of the same name must not shadow them
    def g(x):
        return globala * x

    f = rebind_globals(loads(*dumps(g)), {"globala": 1000})
    assert f(10) == 30


def test_rebind_globals_leaves_module_functions_and_values_alone():
    ns: dict = {}
    assert rebind_globals(os.path.join, ns) is os.path.join
    assert rebind_globals(42, ns) == 42
    assert ns == {}


# ---------------------------------------------------------------- engine ids (seed §E)


def test_register_unregister_multiple_engines():
    ids = IdAllocator()
    assert ids.take(0) == 0
    assert ids.take(1) == 1
    ids.release(0)
    assert ids.take(0) == 0
    ids.release(1)
    assert ids.take(0) == 1  # 0 is taken: the lowest free id instead
    ids.release(0)
    ids.release(1)
    assert [ids.take() for _ in range(3)] == [0, 1, 2]


def test_lowest_free_id_and_reuse():
    ids = IdAllocator()
    assert [ids.take() for _ in range(5)] == [0, 1, 2, 3, 4]
    ids.release(3)
    ids.release(1)
    assert ids.take() == 1
    assert ids.take() == 3
    assert ids.take() == 5


def test_desired_id_is_honoured():
    ids = IdAllocator()
    assert ids.take(5) == 5  # an MPI rank
    assert [ids.take() for _ in range(6)] == [0, 1, 2, 3, 4, 6]
    assert ids.take(2) == 7  # taken: the lowest free one
    ids.release(5)
    assert ids.take(5) == 5


def test_no_511_engine_cap():
    ids = IdAllocator()
    assert [ids.take() for _ in range(600)] == list(range(600))
    assert ids.take(1000) == 1000
    ids.release(550)
    assert ids.take() == 550


# ---------------------------------------------------------------- partitions (seed §2.7)


def test_block_partitions():
    assert partition(range(16), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    assert partition(range(10), 4) == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert partition(range(2), 4) == [[0], [1], [], []]
    assert partition([], 3) == [[], [], []]


def test_partitions_keep_the_sequence_type():
    assert partition((1, 2, 3, 4, 5), 2) == [(1, 2, 3), (4, 5)]
    assert partition("abcdefgh", 4) == ["ab", "cd", "ef", "gh"]
    assert partition(b"abcde", 2) == [b"abc", b"de"]
    parts = partition(np.arange(10), 4)
    assert all(isinstance(p, np.ndarray) for p in parts)
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]


def test_round_robin_partitions():
    assert partition(list(range(10)), 4, "r") == [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]]
    assert partition("abcdefghij", 3, "r") == ["adgj", "beh", "cfi"]


def test_join_inverts_partition():
    assert join([[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert join([[0], [1], [], []]) == [0, 1]
    assert join([(1, 2, 3), (4, 5)]) == (1, 2, 3, 4, 5)
    assert join(["ab", "cd", "ef", "gh"]) == "abcdefgh"
    assert join([b"abc", b"de"]) == b"abcde"
    arr = join([np.array([0, 1, 2]), np.array([3, 4]), np.array([], dtype=np.int64)])
    assert isinstance(arr, np.ndarray)
    assert arr.tolist() == [0, 1, 2, 3, 4]
    assert join([[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]], "r") == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert join(["adgj", "beh", "cfi"], "r") == "abcdefghij"
    assert join([0, 1, 2, 3]) == [0, 1, 2, 3]  # scalars: one per engine, as gather('id')


def test_unknown_distribution():
    with pytest.raises(KeyError):
        check_dist("x")
    with pytest.raises(KeyError):
        partition([1, 2], 2, "x")


# ---------------------------------------------------------------- connection files
# (contract §4, §7)


def test_write_connection_file(tmp_path):
    key = bytes(range(32))
    info = ConnectionInfo(key=key, addresses={"client": "tcp://127.0.0.1:50123"})
    path = tmp_path / "client.json"
    write_connection_file(path, info)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["key"] == "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    assert data["signature_scheme"] == "hmac-sha256"
    assert data["addresses"] == {"client": "tcp://127.0.0.1:50123"}
    assert "curve_serverkey" in data and data["curve_serverkey"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["client.json"]  # no temporary file left

    back = read_connection_file(path)
    assert back.key == key
    assert back.addresses == {"client": "tcp://127.0.0.1:50123"}
    assert back.signature_scheme == "hmac-sha256"
    assert back.curve_serverkey is None


def test_rewrite_replaces_the_file(tmp_path):
    path = tmp_path / "engine.json"
    write_connection_file(
        path, ConnectionInfo(key=b"\x01" * 16, addresses={"engine": "tcp://127.0.0.1:1"})
    )
    write_connection_file(
        path, ConnectionInfo(key=b"\x02" * 16, addresses={"engine": "tcp://127.0.0.1:2"})
    )
    assert read_connection_file(path).addresses == {"engine": "tcp://127.0.0.1:2"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_connection_file(tmp_path):
    missing = tmp_path / "nope" / "client.json"
    with pytest.raises(ConnectionFileError) as exc:
        read_connection_file(missing)
    assert isinstance(exc.value, FileNotFoundError)
    assert isinstance(exc.value, KernelError)
    assert str(missing) in str(exc.value)
    with pytest.raises(FileNotFoundError):
        read_connection_file(missing)


def test_invalid_connection_file(tmp_path):
    path = tmp_path / "client.json"
    path.write_text("{not json")
    with pytest.raises(ConnectionFileError):
        read_connection_file(path)
    path.write_text(json.dumps({"addresses": {"client": "tcp://127.0.0.1:1"}}))  # no key
    with pytest.raises(ConnectionFileError):
        read_connection_file(path)


def test_pickle_streams_in_buffer_positions_are_signed() -> None:
    """A per-engine pickle (scatter/map parts, results) sits among the buffers: it must
    be hashed, so swapping it for another pickle of the same length is caught; only the
    buffers the header lists as raw data are covered by their length alone."""

    signer = Signer(b"k" * 32)
    part0, part1 = pickle.dumps(("aaaa",)), pickle.dumps(("bbbb",))
    raw_data = b"\x00" * 64
    header = {"t": "submit", "parts": [0, 1], "raw": [2]}
    frames = signer.frames(header, b"", [part0, part1, raw_data])
    assert signer.parse(frames).buffers[1] == part1
    evil = pickle.dumps(("cccc",))
    assert len(evil) == len(part1)
    with pytest.raises(WireError):
        signer.parse(frames[:3] + [evil, raw_data])
    # the raw buffer is covered by its length only (it never carries code) ...
    assert signer.parse(frames[:4] + [b"\x01" * 64]).buffers[2] == b"\x01" * 64
    # ... but not its length, and a header that lies about which buffers are raw is forged
    with pytest.raises(WireError):
        signer.parse(frames[:4] + [b"\x01" * 65])
    forged_head = frames[0][:4] + frames[0][4:36] + msgpack.packb({**header, "raw": True})
    with pytest.raises(WireError):
        signer.parse([forged_head, *frames[1:3], evil, raw_data])


@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_large_bytes_go_out_of_band_and_keep_their_type(kind: type) -> None:
    blob = kind(b"xy" * 100_000)
    for value in (blob, {"blob": blob, "n": 1}, [1, blob], ({"blob": blob},)):
        data, buffers = dumps(value)
        assert len(buffers) == 1 and len(data) < 1000, "the blob must travel as its own frame"
        back = loads(data, [bytes(b) for b in buffers])
        assert back == value and type(back) is type(value)
