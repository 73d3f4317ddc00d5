"""Replayed signed messages are dropped (docs/protocol.md §2, Replay protection).

First the rule itself (``ReplayGuard``, ``Signer`` sessions), then real messages captured
on the wire by a tap (tests/wiretap.py) and sent again from a raw ZeroMQ socket: a
client's ``submit``, an engine's ``register``, ``reply`` and heartbeat ``ping``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from helpers import HANG, kill_pids, wait_until
from wiretap import UP, Tap, tapped_connection

import multiengine
from multiengine.wire import message
from multiengine.wire.message import ReplayGuard, Signer, WireError
from multiengine.wire.protocol import STAMP_FIELDS, check_header

KEY = b"k" * 32


def stamp(sid: int, seq: int, ts: float | None = None) -> dict[str, Any]:
    return {"t": "ping", "sid": sid, "seq": seq, "ts": message._time() if ts is None else ts}


# ---------------------------------------------------------------- the rule
def test_a_session_is_accepted_only_with_growing_counters() -> None:
    guard = ReplayGuard()
    guard.check(stamp(1, 1))
    guard.check(stamp(1, 5))  # gaps are fine
    guard.check(stamp(2, 1))  # another session
    for seq in (5, 4, 1):
        with pytest.raises(WireError, match="replayed message: 'ping' #"):
            guard.check(stamp(1, seq))
    guard.check(stamp(1, 6))


@pytest.mark.parametrize("offset", [-400.0, 301.0, 1e9])
@pytest.mark.fault(
    section="hostile-input",
    fault="a stamp more than 300 s off the receiver's clock, or a missing or malformed stamp",
    outcome=(
        "dropped and counted: `stale message: its time is +412 s from this host's clock ...`, `no "
        "valid replay stamp (sid, seq, ts) in the header`"
    ),
    also=[
        "tests/wire/test_replay.py::test_a_missing_or_malformed_stamp_is_dropped",
        "tests/wire/test_fuzz.py::test_fuzz_the_controller",
    ],
)
def test_stale_or_future_timestamps_are_dropped(offset: float) -> None:
    with pytest.raises(WireError, match="stale message"):
        ReplayGuard().check(stamp(1, 1, message._time() + offset))


def test_clocks_within_the_window_are_accepted() -> None:
    guard = ReplayGuard()
    guard.check(stamp(1, 1, message._time() + 250))  # a host whose clock is ahead
    guard.check(stamp(2, 1, message._time() - 250))  # and one whose clock is behind


@pytest.mark.parametrize(
    "header",
    [
        {"t": "ping"},
        {"t": "ping", "sid": 1, "seq": 1},
        {"t": "ping", "sid": "1", "seq": 1, "ts": 1.0},
        {"t": "ping", "sid": 1, "seq": True, "ts": 1.0},
        {"t": "ping", "sid": 1, "seq": 1, "ts": 1},
    ],
)
def test_a_missing_or_malformed_stamp_is_dropped(header: dict[str, Any]) -> None:
    with pytest.raises(WireError, match="no valid replay stamp"):
        ReplayGuard().check(header)


def test_idle_sessions_are_forgotten_and_cannot_be_replayed_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1_000_000.0]
    monkeypatch.setattr(message, "_time", lambda: clock[0])
    guard = ReplayGuard()
    old = stamp(7, 1)
    guard.check(old)
    clock[0] += message.SESSION_KEEP + message.SWEEP_EVERY + 1
    guard.check(stamp(8, 1))  # the sweep runs
    assert len(guard) == 1, "the idle session was not forgotten"
    with pytest.raises(WireError, match="stale message"):
        guard.check(old)  # forgotten, but its timestamp gives it away


def test_memory_is_bounded_and_sessions_forgotten_early_stay_protected() -> None:
    guard = ReplayGuard(limit=100)
    now = message._time()
    first = [stamp(sid, 1, now - 200 + sid * 0.01) for sid in range(100)]
    for h in first:
        guard.check(h)
    for sid in range(100, 1000):  # sessions that come later carry later timestamps
        guard.check(stamp(sid, 1, now - 100 + sid * 0.01))
        assert len(guard) <= 100
    with pytest.raises(WireError, match="forgotten session|replayed"):
        guard.check(first[0])
    guard.check(stamp(5000, 1))  # a new session is still welcome


def test_every_thread_signs_in_a_session_of_its_own() -> None:
    signer = Signer(KEY)
    seen: list[dict[str, Any]] = []

    def send() -> None:
        for _ in range(3):
            seen.append(signer.parse(signer.frames({"t": "ping"})).header)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sessions: dict[int, list[int]] = {}
    for h in seen:
        sessions.setdefault(h["sid"], []).append(h["seq"])
    assert len(sessions) == 4
    assert all(sorted(seqs) == [1, 2, 3] for seqs in sessions.values())


def test_a_forked_child_starts_new_sessions() -> None:
    signer = Signer(KEY)
    parent = signer.parse(signer.frames({"t": "ping"})).header
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(r)
        os.write(w, json.dumps(signer.parse(signer.frames({"t": "ping"})).header).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        child = json.loads(f.read())
    os.waitpid(pid, 0)
    assert child["sid"] != parent["sid"] and child["seq"] == 1


def test_the_stamp_is_allowed_on_every_message_type() -> None:
    check_header({"t": "submit", **dict.fromkeys(STAMP_FIELDS, 1)})


# ---------------------------------------------------------------- captured and replayed
@pytest.fixture
def tapped(
    fresh_cluster: Callable[..., multiengine.Cluster], tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """A 1-engine cluster, plus a client and a second engine whose traffic passes taps."""
    cluster = fresh_cluster(n=1, heartbeat_timeout=1.5)
    cdir = cluster.cluster_dir
    taps = tapped_connection(cdir.client_file, tmp_path / "client.json", ["client"])
    taps |= tapped_connection(cdir.engine_file, tmp_path / "engine.json", ["engine", "heartbeat"])
    engine = subprocess.Popen(
        [sys.executable, "-m", "multiengine", "engine", "--connection-file"]
        + [str(tmp_path / "engine.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    mec = multiengine.MultiEngineClient(connection_file=tmp_path / "client.json")
    try:
        wait_until(lambda: mec.get_ids() == [0, 1], message="the tapped engine to register")
        yield {"cluster": cluster, "taps": taps, "engine": engine, "mec": mec}
    finally:
        mec.close()
        kill_pids([engine.pid])
        engine.wait(HANG)
        for tap in taps.values():
            tap.close()


def send_raw(url: str, *messages: list[bytes], identity: bytes | None = None) -> None:
    """Send each message's frames as they are, from one fresh DEALER (with ``identity``,
    if given). One connection for all: a second connection with the same identity would
    take the identity over (ROUTER_HANDOVER), and the controller might not have read
    what the first one sent by then."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 10_000)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    try:
        sock.connect(url)
        for frames in messages:
            sock.send_multipart(frames)
    finally:
        sock.close()


def address(cluster: multiengine.Cluster, channel: str) -> str:
    files = {"client": cluster.cluster_dir.client_file, "engine": cluster.cluster_dir.engine_file}
    info = json.loads(files.get(channel, cluster.cluster_dir.engine_file).read_text())
    return str(info["addresses"][channel])


@pytest.mark.fault(
    section="hostile-input",
    fault=(
        "a captured signed message sent again (to the same or another socket of the controller, "
        "or to an engine)"
    ),
    outcome=(
        "dropped and counted: `replayed message: 'submit' #1 of a session already at #1`; its "
        "command does not run again"
    ),
    also=[
        "tests/wire/test_replay.py::test_replayed_register_and_reply_are_dropped",
        "tests/wire/test_replay.py::test_replayed_heartbeats_do_not_keep_a_dead_engine_registered",
        "tests/wire/test_fuzz.py::test_fuzz_the_controller",
    ],
)
def test_a_replayed_submit_is_not_run_again(tapped: dict[str, Any]) -> None:
    mec: multiengine.MultiEngineClient = tapped["mec"]
    tap: Tap = tapped["taps"]["client"]
    mec.execute("hits = []", targets=1)
    mec.execute("hits.append(1)", targets=1)
    (submit,) = [c for c in tap.find(UP, "submit") if b"hits.append(1)" in b"".join(c.frames)]
    dropped = mec.status()["dropped_messages"]
    for _ in range(3):
        send_raw(address(tapped["cluster"], "client"), submit.frames)
    wait_until(lambda: mec.status()["dropped_messages"] == dropped + 3, message="3 drops")
    assert mec.pull("hits", targets=1) == [[1]], "a replayed submit ran again"


def test_replayed_register_and_reply_are_dropped(tapped: dict[str, Any]) -> None:
    mec: multiengine.MultiEngineClient = tapped["mec"]
    tap: Tap = tapped["taps"]["engine"]
    mec.execute("x = 1", targets=1)
    register = tap.find(UP, "register")[0]
    reply = tap.find(UP, "reply")[-1]
    dropped = mec.status()["dropped_messages"]
    url = address(tapped["cluster"], "engine")
    # without replay protection, the register would add a new engine
    send_raw(url, register.frames, reply.frames, identity=b"e-phantom")
    wait_until(lambda: mec.status()["dropped_messages"] == dropped + 2, message="2 drops")
    assert mec.get_ids() == [0, 1], "a replayed register added an engine"
    assert mec.pull("x", targets=1) == [1]


def test_replayed_heartbeats_do_not_keep_a_dead_engine_registered(tapped: dict[str, Any]) -> None:
    mec: multiengine.MultiEngineClient = tapped["mec"]
    tap: Tap = tapped["taps"]["heartbeat"]
    # what an engine sends on the heartbeat channel: its hello (heartbeats are libzmq's)
    wait_until(lambda: tap.find(UP, "hello"), message="the engine's hello passes the tap")
    pings = tap.find(UP, "hello")
    engine: subprocess.Popen[bytes] = tapped["engine"]
    kill_pids([engine.pid])
    engine.wait(HANG)
    # the taps are proxies: libzmq in them would answer the controller's heartbeats for
    # the dead engine, so they close too, as the engine's own connections would
    tapped["taps"]["engine"].close()
    tap.close()
    dropped = mec.status()["dropped_messages"]
    url = address(tapped["cluster"], "heartbeat")
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, pings[0].peer)  # the dead engine's own identity
    sock.connect(url)
    try:
        sent = 0

        def replay_and_look() -> bool:
            nonlocal sent
            sock.send_multipart(pings[sent % len(pings)].frames)
            sent += 1
            return mec.get_ids() == [0]

        wait_until(replay_and_look, interval=0.1, message="the dead engine to be unregistered")
    finally:
        sock.close()
    wait_until(lambda: mec.status()["dropped_messages"] >= dropped + sent, message="drops")
