"""Hostile messages for the fuzz tests (tests/wire/test_fuzz.py) and benchmarks/fuzz.py.

:func:`hostile_message` is a hypothesis strategy of multipart messages for one channel:
garbage, truncated, unsigned, signed with another key, stale, with a broken replay
stamp, replayed, oversized (frames of megabytes, thousands of frames) and, signed with
the cluster's key, headers of every type of ``MESSAGES`` with wrong types, missing
fields, huge or negative numbers and bad ``parts``/``xfer``/``tasks`` lists. The messages
that must never be obeyed (all but the validly signed ones) carry a *canary*: code that
would create a file and set a name in the engine's namespace. Validly signed messages
carry content that names no file (random bytes, or harmless values), and never ``kill``
or ``reset``, which a holder of the key may legitimately send.

:class:`ControllerFuzz` aims them at the three sockets of a real controller,
:class:`EngineFuzz` at the two sockets of a real engine, registered with a
:class:`FakeController`. Each ``example`` sends a few messages and then checks that the
process lives and still answers a real request; ``verdict`` checks what must hold at the
end (nothing obeyed, exactly the rejected messages counted as dropped, no traceback in
the logs, bounded memory) and returns the figures.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq
from hypothesis import strategies as st

from multiengine.errors import CompositeError, QueueCleared
from multiengine.wire import message
from multiengine.wire import protocol as P
from multiengine.wire.message import DELIM, REPLAY_WINDOW, ReplayGuard, Signer, digests

__all__ = [
    "ControllerFuzz",
    "EngineFuzz",
    "FakeController",
    "Target",
    "canary_code",
    "hostile_message",
    "rss_kb",
]

SAFE = frozenset({"kill", "reset"})  # commands a fuzzer signing with the real key must not send

# what each channel's receiver takes: the message types sent to it
TYPES_TO = {
    ("controller", P.CLIENT_CHANNEL): sorted(
        {m.type for m in P.MESSAGES if m.channel == P.CLIENT_CHANNEL and m.sender == P.CLIENT}
    ),
    ("controller", P.ENGINE_CHANNEL): sorted(
        {m.type for m in P.MESSAGES if m.channel == P.ENGINE_CHANNEL and m.sender == P.ENGINE}
    ),
    ("controller", P.HEARTBEAT_CHANNEL): sorted(
        {m.type for m in P.MESSAGES if m.channel == P.HEARTBEAT_CHANNEL and m.sender == P.ENGINE}
    ),
    ("engine", P.ENGINE_CHANNEL): [P.CMD, P.CHUNK, P.REGISTERED],
    # not "unknown": that one legitimately tells the engine to stop
    ("engine", P.HEARTBEAT_CHANNEL): [P.PONG, P.INTERRUPT],
}
FIELDS: dict[str, frozenset[str]] = {}
for _m in P.MESSAGES:
    FIELDS[_m.type] = FIELDS.get(_m.type, frozenset()) | _m.fields


# The canary: a command, validly signed, whose code creates a file and binds a name on
# an engine. It is signed in a session (Signer) of its own that sends nothing else, so
# the receiver has never heard that session: of the messages made from it, only the
# defect each one has (a cut, a bad signature, a stale stamp...) can keep it from running.
CANARY_NAME = "obeyed"  # what the canary code binds in the namespace of an engine


def canary_code(path: Path) -> str:
    return f"open({str(path)!r}, 'a').write('obeyed'); {CANARY_NAME} = True"


@dataclass
class Target:
    """Where hostile messages go, and what they may carry."""

    side: str  # "controller" or "engine": who receives
    channel: str
    key: bytes
    canary: list[Any]  # frames of a message that would trip the canary if obeyed
    replays: list[list[Any]] = field(default_factory=list)  # legit messages, already sent
    identities: list[bytes] = field(default_factory=list)  # for "rt" fields
    signer: Signer | None = None

    def __post_init__(self) -> None:
        self.signer = Signer(self.key)


# ---------------------------------------------------------------- values
ints = st.one_of(
    st.integers(-3, 8),
    st.sampled_from([-(2**63), 2**63 - 1, 2**64 - 1, 2**31, -(2**31), 10**12]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=12),
)
hostile_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
names = st.sampled_from(sorted((P.ENGINE_COMMANDS | P.CONTROLLER_COMMANDS) - SAFE) + ["nope"])


def _no_dangerous_name(v: Any) -> bool:
    return not (isinstance(v, str) and v in SAFE)


xfers = st.lists(
    st.one_of(
        st.tuples(st.lists(ints, max_size=3), ints, ints).map(list),
        hostile_values,
    ),
    max_size=3,
)
links = st.one_of(
    st.tuples(
        st.sampled_from([P.STRING_TASK, P.MAP_TASK, "other"]) | hostile_values,
        ints,
        st.text(max_size=5),
        ints,
        ints,
        st.none() | st.floats(-1, 5) | hostile_values,
        st.booleans(),
    ).map(list),
    hostile_values,
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "targets": st.one_of(st.just("all"), ints, st.lists(ints, max_size=4), hostile_values),
    "cmd": st.one_of(names, ints, hostile_values).filter(_no_dangerous_name),
    "name": st.one_of(names, hostile_values).filter(_no_dangerous_name),
    "parts": st.one_of(st.lists(ints, max_size=5), hostile_values),
    "xfer": st.one_of(xfers, st.tuples(st.lists(ints, max_size=3), ints, ints).map(list)),
    "tasks": st.one_of(st.lists(st.lists(links, max_size=3), max_size=3), hostile_values),
    "ids": st.one_of(st.lists(ints, max_size=5), hostile_values),
    "mode": st.one_of(st.sampled_from([P.NOW, P.ALL, P.ANY]), hostile_values),
    "task": st.one_of(st.tuples(hostile_values, hostile_values).map(list), hostile_values),
    "raw": st.one_of(st.just(True), st.lists(st.integers(-2, 8), max_size=4)),
    "dg": st.just(None),  # (made right when signed: _sign_as_is)
    "cdg": st.just(None),  # (the same)
    "why": st.one_of(st.sampled_from([P.WHY_INTERRUPT, P.WHY_ABORT, P.WHY_REVOKE]), hostile_values),
    "controller": st.just(False) | hostile_values.filter(lambda v: not v),
}


@st.composite
def _header(draw: st.DrawFn, target: Target) -> dict[str, Any]:
    types = TYPES_TO[(target.side, target.channel)]
    t = draw(st.sampled_from(types)) if draw(st.integers(0, 9)) else draw(st.text(max_size=8))
    header: dict[str, Any] = {"t": t}
    for name in sorted(FIELDS.get(t, frozenset())):
        if draw(st.integers(0, 3)) == 0:
            continue  # a missing field
        if name == "rt" and target.identities:
            values = st.sampled_from(target.identities) | hostile_values
        else:
            values = FIELD_VALUES.get(name, hostile_values)
        header[name] = draw(values)
    if draw(st.integers(0, 5)) == 0:  # a field no message has (a type that is not a
        # string is dropped as unverified, and the stamp is set when signing)
        extra = st.text(min_size=1, max_size=6).filter(lambda k: k not in P.COMMON_FIELDS)
        header[draw(extra)] = draw(hostile_values)
    return header


harmless_content = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda v: pickle.dumps((v,)), scalars),
    st.builds(lambda v: msgpack.packb(v), scalars),
)


def _sign_as_is(
    signer: Signer, header: dict[str, Any], content: Any, buffers: list[Any]
) -> list[Any]:
    """Sign without stamping: the stamp in ``header`` (if any) is what it is."""
    if "dg" in header:  # digested buffers: the digests they have (a wrong one is a
        # changed buffer, which test_framing.py covers)
        header = {**header, "dg": digests(buffers)}
    if "cdg" in header:  # a digested content: the digest it has
        header = {**header, "cdg": digests([content])[0]}
    hbytes = msgpack.packb(header)
    raw = True if "dg" in header else header.get("raw")
    if not (raw is None or raw is True or isinstance(raw, list)):
        raw = None
    try:
        sig = signer.signature(hbytes, content, buffers, raw, "cdg" in header)
    except TypeError:
        sig = signer.signature(hbytes, content, buffers, None)
    return [DELIM + sig + hbytes, content, *buffers]


@st.composite
def hostile_message(draw: st.DrawFn, target: Target) -> tuple[str, list[Any]]:
    """(kind, frames) of one hostile message for ``target``."""
    # half of them validly signed, so that the handlers behind the check are exercised
    kinds = ["garbage", "truncated", "unsigned", "wrong_key", "stale", "bad_stamp", "oversized"]
    kinds += ["signed"] * (len(kinds) + 1)
    if target.replays:
        kinds.append("replay")
    kind = draw(st.sampled_from(kinds))
    signer = target.signer
    assert signer is not None
    if kind == "garbage":
        frames = draw(st.lists(st.binary(max_size=80), min_size=1, max_size=6))
        if frames and draw(st.booleans()):
            frames[0] = DELIM + frames[0]
        return kind, frames
    if kind == "truncated":
        canary = [bytes(f) for f in target.canary]
        total = sum(len(f) for f in canary)
        cut = draw(st.integers(1, total - 1))
        out: list[Any] = []
        for f in canary:
            if cut <= 0:
                break
            out.append(f[:cut])
            cut -= len(f)
        if draw(st.booleans()) and len(out) > 1:
            del out[draw(st.integers(1, len(out) - 1))]  # a frame went missing instead
        return kind, out
    if kind == "unsigned":
        head = bytes(target.canary[0])
        sig = draw(st.sampled_from([b"\0" * 32, b""]) | st.binary(min_size=32, max_size=32))
        return kind, [DELIM + sig + head[len(DELIM) + 32 :], *target.canary[1:]]
    if kind == "wrong_key":
        other = Signer(draw(st.binary(min_size=1, max_size=33).filter(lambda k: k != target.key)))
        head = msgpack.unpackb(bytes(target.canary[0])[len(DELIM) + 32 :])
        return kind, _sign_as_is(other, head, target.canary[1], list(target.canary[2:]))
    if kind in ("stale", "bad_stamp"):
        head = msgpack.unpackb(bytes(target.canary[0])[len(DELIM) + 32 :])
        if kind == "stale":
            off = draw(st.floats(REPLAY_WINDOW + 1, 1e9)) * draw(st.sampled_from([-1, 1]))
            head["ts"] = message._time() + off
            head["seq"] = draw(st.integers(1, 2**62))
            head["sid"] = draw(st.integers(0, 2**62))
        else:
            for name in P.STAMP_FIELDS:
                if draw(st.booleans()):
                    head.pop(name, None)
                else:
                    head[name] = draw(hostile_values.filter(lambda v: type(v) not in (int, float)))
        return kind, _sign_as_is(signer, head, target.canary[1], list(target.canary[2:]))
    if kind == "oversized":  # the canary, with megabytes or thousands of frames added
        head = bytes(target.canary[0])
        if draw(st.booleans()):
            size = draw(st.sampled_from([2**20, 4 * 2**20, 16 * 2**20]))
            extra = [b"\0" * size] * draw(st.integers(1, 2))
        else:
            extra = [b""] * draw(st.integers(1000, 20_000))
        if draw(st.booleans()):  # the signature no longer matches the frames
            return kind, [head, target.canary[1], *target.canary[2:], *extra]
        # or the header grew: the signature covers the old one
        pad = msgpack.packb({"pad": "x" * draw(st.integers(2**20, 8 * 2**20))})
        return kind, [head + pad, *target.canary[1:], *extra[:1]]
    if kind == "replay":
        return kind, list(draw(st.sampled_from(target.replays)))
    header = draw(_header(target))
    content = draw(harmless_content)
    buffers = draw(st.lists(st.binary(max_size=64), max_size=4))
    if draw(st.integers(0, 9)) == 0:
        buffers += [b""] * draw(st.integers(0, 300))  # many frames
    if draw(st.integers(0, 19)) == 0:
        header["pad"] = "x" * draw(st.integers(1000, 200_000))  # a large header
    try:
        frames = signer.frames(header, content, buffers)
    except (TypeError, ValueError, OverflowError):
        header.pop("raw", None)
        frames = signer.frames(header, content, buffers)
    return kind, frames


# ---------------------------------------------------------------- a fake controller
class FakeController:
    """Binds an engine channel and a heartbeat channel, registers one real engine, keeps
    its heartbeats answered (on a thread of its own), and lets a test send it anything."""

    def __init__(self, workdir: Path, key: bytes) -> None:
        self.key = key
        self.signer = Signer(key)
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.engine = self.ctx.socket(zmq.ROUTER)
        self.hb = self.ctx.socket(zmq.ROUTER)
        for s in (self.engine, self.hb):
            s.setsockopt(zmq.LINGER, 0)
        ep = self.engine.bind_to_random_port("tcp://127.0.0.1")
        hp = self.hb.bind_to_random_port("tcp://127.0.0.1")
        self.hb_lock = threading.Lock()
        self.hb_signer = Signer(key)  # the heartbeat thread signs in sessions of its own
        self.ident = b""
        self.stop = threading.Event()
        conn = {
            "key": key.hex(),
            "signature_scheme": "hmac-sha256",
            "addresses": {"engine": f"tcp://127.0.0.1:{ep}", "heartbeat": f"tcp://127.0.0.1:{hp}"},
        }
        path = workdir / "engine.json"
        path.write_text(json.dumps(conn))
        path.chmod(0o600)
        self.stderr = workdir / "engine.stderr"
        with open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "multiengine", "engine", "--connection-file", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self._cmd = 1000
        self._thread: threading.Thread | None = None
        self.hb_sent: list[list[Any]] = []  # a heartbeat-channel message sent, for replays
        self.seen: Counter[str] = Counter()  # what the engine sent besides call()'s answers

    def register(self, timeout: float) -> None:
        if not self.engine.poll(int(timeout * 1000)):
            raise AssertionError("the engine did not register")
        ident, *frames = self.engine.recv_multipart()
        msg = self.signer.parse([ident, *frames])
        assert msg.type == P.REGISTER
        self.ident = ident
        reply = {"t": P.REGISTERED, "id": 0, "hb_period": 0.25, "hb_timeout": 30.0}
        reply["epoch"] = msg.header.get("epoch", 0)  # the engine takes only its own epoch's
        self.engine.send_multipart(self.signer.frames(reply, b"", (), (ident,)))
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        guard = message.ReplayGuard()
        while not self.stop.is_set():
            with self.hb_lock:
                while self.hb.poll(0):
                    frames = self.hb.recv_multipart()
                    try:
                        msg = self.hb_signer.parse(frames, guard)
                    except message.WireError:
                        continue
                    if msg.type == P.HELLO and not self.hb_sent:
                        # a legitimate heartbeat-channel message to replay later: an
                        # interrupt for a command the engine never had (it does nothing)
                        header = {"t": P.INTERRUPT, "cmd": 10**6, "why": P.WHY_INTERRUPT}
                        sent = self.hb_signer.frames(header, b"", (), (frames[0],))
                        self.hb.send_multipart(sent)
                        self.hb_sent.append(sent[1:])
            time.sleep(0.02)

    def send(self, channel: str, frames: list[Any]) -> None:
        if channel == P.HEARTBEAT_CHANNEL:
            with self.hb_lock:
                self.hb.send_multipart([self.ident, *frames])
        else:
            self.engine.send_multipart([self.ident, *frames])

    def _note(self, msg: message.Message) -> None:
        """Count a message from the engine in :attr:`seen` by type, status and error."""
        if msg.type == P.REPLY and msg.header.get("status") == P.STATUS_ERROR:
            self.seen["error " + P.ErrorReport.from_bytes(msg.content).ename] += 1
        else:
            self.seen[f"{msg.type} {msg.header.get('status', '')}".strip()] += 1

    def cmd_frames(
        self, name: str, args: tuple[Any, ...], signer: Signer | None = None
    ) -> tuple[int, list[Any]]:
        """A new command (not sent): its number and frames."""
        self._cmd += 1
        header = {"t": P.CMD, "cmd": self._cmd, "name": name}
        return self._cmd, (signer or self.signer).frames(header, pickle.dumps(args))

    def call(self, name: str, *args: Any, timeout: float = 30.0) -> Any:
        """Run a command on the engine and return its value (or raise its error)."""
        cmd, frames = self.cmd_frames(name, args)
        self.engine.send_multipart([self.ident, *frames])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.engine.poll(100):
                continue
            msg = self.signer.parse(self.engine.recv_multipart())
            if msg.type == P.REPLY and msg.header.get("cmd") == cmd:
                if msg.header["status"] == P.STATUS_OK:
                    return pickle.loads(bytes(msg.content))
                raise RuntimeError(P.ErrorReport.from_bytes(msg.content).evalue)
            self._note(msg)
        raise AssertionError(f"the engine did not answer {name} within {timeout:g} s")

    def close(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        self.engine.close(0)
        self.hb.close(0)
        self.ctx.term()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- the fuzzers
def _drain(sock: zmq.Socket[Any]) -> int:
    n = 0
    while sock.poll(0):
        sock.recv_multipart()
        n += 1
    return n


VERIFIED = "signed"  # the one kind of message that passes verification


class ControllerFuzz:
    """Hostile messages to the client, engine and heartbeat sockets of a running cluster
    of one engine, from sockets of the fuzzer's own; a real client checks it works.

    Before fuzzing, a legitimate ``submit`` (``hits.append(1)``) is sent and answered:
    replays of it must all be dropped, so ``hits`` stays ``[1]``.
    """

    def __init__(self, cluster: Any, workdir: Path) -> None:
        self.cluster = cluster
        self.mec = cluster.multiengine_client()
        info = json.loads(cluster.cluster_dir.client_file.read_text())
        addresses = {
            **info["addresses"],
            **json.loads(cluster.cluster_dir.engine_file.read_text())["addresses"],
        }
        self.key = bytes.fromhex(info["key"])
        self.signer = Signer(self.key)
        self.canary = workdir / "canary"
        self.pid = self.mec.status()["pid"]
        self.engine_pid = next(iter(cluster.engine_pids().values()))
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.socks: dict[str, zmq.Socket[Any]] = {}
        identity = {P.CLIENT_CHANNEL: b"c-fuzz", P.ENGINE_CHANNEL: b"e-fuzz"}
        for channel in (P.CLIENT_CHANNEL, P.ENGINE_CHANNEL, P.HEARTBEAT_CHANNEL):
            s = self.ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.IDENTITY, identity.get(channel, b"e-fuzz"))
            s.connect(addresses[channel])
            self.socks[channel] = s
        self.sent: Counter[str] = Counter()
        self.examples = 0
        self.rss: list[int] = []
        self._pings = iter(range(10**6, 10**18))
        self.mec.execute("hits = []", targets=0)
        client = self.socks[P.CLIENT_CHANNEL]
        submit = {"t": P.SUBMIT, "id": 1, "rt": b"c-fuzz", "cmd": "execute", "targets": 0}
        legit = self.signer.frames(submit, pickle.dumps(("hits.append(1)",)))
        client.send_multipart(legit)
        if not client.poll(30_000):
            raise AssertionError("the legitimate submit got no answer")
        _drain(client)
        canary = {**submit, "targets": "all", "id": 2}
        canary_frames = Signer(self.key).frames(  # a session of its own: see CANARY
            canary, pickle.dumps((canary_code(self.canary),))
        )
        fg = self.mec._core.identity  # answers may be aimed at a real client: it must cope
        self.targets = {
            ch: Target(
                "controller", ch, self.key, canary_frames, [legit], [b"c-fuzz", fg, fg + b"-b"]
            )
            for ch in self.socks
        }
        self.dropped_before = self.mec.status()["dropped_messages"]
        self.rss.append(rss_kb(self.pid))

    def _answers(self) -> bool:
        """A ping on the fuzzer's own client socket gets its pong (so everything that
        socket sent before has been read)."""
        sock = self.socks[P.CLIENT_CHANNEL]
        mid = next(self._pings)
        sock.send_multipart(self.signer.frames({"t": P.PING, "id": mid, "rt": b"c-fuzz"}))
        guard = ReplayGuard()
        while sock.poll(30_000):
            try:
                msg = self.signer.parse(sock.recv_multipart(), guard)
            except message.WireError:
                continue
            if msg.type == P.PONG and msg.header.get("id") == mid:
                return True
        return False

    def example(self, data: st.DataObject) -> None:
        """Send one to three hostile messages; the controller must live and answer."""
        for _ in range(data.draw(st.integers(1, 3))):
            channel = data.draw(st.sampled_from(sorted(self.socks)))
            kind, frames = data.draw(hostile_message(self.targets[channel]))
            self.socks[channel].send_multipart(frames)
            self.sent[kind] += 1
        for s in self.socks.values():
            _drain(s)
        self.examples += 1
        assert process_alive(self.pid), "the controller died"
        assert self._answers(), "the controller stopped answering"
        # a real client call: the engine works, and the replayed submit never ran again
        assert self._hits() == [[1]], "a replayed submit ran again"
        if self.examples % 100 == 0:
            self.rss.append(rss_kb(self.pid))

    def _hits(self) -> Any:
        """``pull('hits')`` on the engine. A validly signed ``clear_queue`` of the
        fuzzer's (which a holder of the key may send) can clear this pull from the
        engine's queue, as it would any client's: then it is asked again."""
        for _ in range(10):
            try:
                return self.mec.pull("hits", targets=0)
            except CompositeError as e:
                if not all(isinstance(err, QueueCleared) for _, err, _ in e.elist):
                    raise
        raise AssertionError("the pull was cleared from the queue ten times")

    @property
    def rejected(self) -> int:
        return sum(n for kind, n in self.sent.items() if kind != VERIFIED)

    def verdict(self) -> dict[str, Any]:
        """Check what must hold after fuzzing; the figures of the run."""
        self._answers()  # everything sent has been read
        status = self.mec.status()
        dropped = status["dropped_messages"] - self.dropped_before
        assert not self.canary.exists(), "a message that should have been dropped was obeyed"
        assert CANARY_NAME not in self.mec.keys(targets=0)[0], "canary code ran"
        assert dropped == self.rejected, (
            f"{self.rejected} messages should have failed verification, {dropped} did: "
            f"{dict(self.sent)}"
        )
        assert self._hits() == [[1]], "a replayed submit ran again"
        self.mec.execute("_follow_up = 41 + 1", targets=0)
        assert self.mec.pull("_follow_up", targets=0) == [42]
        assert process_alive(self.engine_pid), "the engine died"
        self.rss.append(rss_kb(self.pid))
        assert max(self.rss) - self.rss[0] < 64 * 1024, f"the controller's memory grew: {self.rss}"
        log = (self.cluster.cluster_dir.path / "log" / "controller.log").read_text()
        at = log.find("Traceback")
        assert at < 0, "a handler failed on a verified message:\n" + log[at - 1500 : at + 3000]
        return {
            "examples": self.examples,
            "messages": dict(self.sent),
            "dropped": dropped,
            "rss_kb": self.rss,
        }

    def close(self) -> None:
        for s in self.socks.values():
            s.close(0)
        self.ctx.term()
        self.mec.close()


class EngineFuzz:
    """Hostile messages to both sockets of a real engine, registered with a
    :class:`FakeController`; a command afterwards checks it works.

    A legitimate ``cmd`` (``hits.append(1)``) is sent first; on the heartbeat channel a
    harmless ``interrupt`` already sent is the message replayed.
    """

    def __init__(self, workdir: Path) -> None:
        self.fake = FakeController(workdir, os.urandom(32))
        self.canary = workdir / "canary"
        self.sent: Counter[str] = Counter()
        self.examples = 0
        fake = self.fake
        fake.register(30.0)
        fake.call("execute", "hits = []")
        _, legit = fake.cmd_frames("execute", ("hits.append(1)",))
        fake.send(P.ENGINE_CHANNEL, legit)
        _, canary_frames = fake.cmd_frames(
            "execute",
            (canary_code(self.canary),),
            Signer(fake.key),  # see CANARY
        )
        deadline = time.monotonic() + 30
        while not fake.hb_sent:  # sent once the engine said hello on its heartbeat socket
            assert time.monotonic() < deadline, "no heartbeat from the engine"
            time.sleep(0.05)
        replays = {P.ENGINE_CHANNEL: [legit], P.HEARTBEAT_CHANNEL: fake.hb_sent[:1]}
        self.targets = {
            ch: Target("engine", ch, fake.key, canary_frames, replays[ch]) for ch in replays
        }
        self.dropped_before = self.dropped()

    def dropped(self) -> int:
        self.fake.call(
            "execute",
            "from multiengine.engine import get_engine\n_dropped = get_engine().dropped_messages",
        )
        return int(self.fake.call("pull", "_dropped"))

    def example(self, data: st.DataObject) -> None:
        for _ in range(data.draw(st.integers(1, 3))):
            channel = data.draw(st.sampled_from(sorted(self.targets)))
            kind, frames = data.draw(hostile_message(self.targets[channel]))
            self.fake.send(channel, frames)
            self.sent[kind] += 1
        self.examples += 1
        assert self.fake.process.poll() is None, "the engine died"
        # a real command: answered (after any the fuzzer sent), and hits untouched
        assert self.fake.call("pull", "hits") == [1], "a replayed command ran again"

    @property
    def rejected(self) -> int:
        return sum(n for kind, n in self.sent.items() if kind != VERIFIED)

    def verdict(self) -> dict[str, Any]:
        fake = self.fake
        assert not self.canary.exists(), "a message that should have been dropped was obeyed"
        dropped = self.dropped() - self.dropped_before
        # the heartbeat thread may not have read its last messages yet
        deadline = time.monotonic() + 30
        while dropped != self.rejected and time.monotonic() < deadline:
            time.sleep(0.1)
            dropped = self.dropped() - self.dropped_before
        assert dropped == self.rejected, (
            f"{self.rejected} messages should have failed verification, {dropped} did: "
            f"{dict(self.sent)}"
        )
        fake.call("execute", "answer = 6 * 7")
        assert fake.call("pull", "answer") == 42, "the engine does not work after the fuzzing"
        assert fake.call("pull", "hits") == [1], "a replayed command ran again"
        assert CANARY_NAME not in fake.call("keys"), "canary code ran"
        assert not self.canary.exists(), "a message that should have been dropped was obeyed"
        assert fake.process.poll() is None
        err = fake.stderr.read_text()
        at = err.find("Traceback")
        assert at < 0, "the engine failed:\n" + err[at - 1500 : at + 3000]
        return {
            "examples": self.examples,
            "messages": dict(self.sent),
            "dropped": dropped,
            "answers": dict(fake.seen),
            "rss_kb": rss_kb(fake.process.pid),
        }

    def close(self) -> None:
        self.fake.close()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
