"""Connecting a client: missing connection files and profiles, and a controller that is gone."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest
from helpers import assert_cluster_works, call_within

import multiengine
from multiengine.errors import ConnectionFileError, ControllerConnectionError, KernelError


def test_a_missing_connection_file_raises_connection_file_error() -> None:
    with pytest.raises(ConnectionFileError) as info:
        multiengine.MultiEngineClient(connection_file="/nonexistent.json")
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, KernelError)
    assert "/nonexistent.json" in str(info.value)
    with pytest.raises(FileNotFoundError):
        multiengine.MultiEngineClient(connection_file="/nonexistent.json")


def test_an_unknown_profile_raises_connection_file_error() -> None:
    with pytest.raises(ConnectionFileError) as info:
        multiengine.MultiEngineClient(profile="no-such-profile-here", timeout=1)
    assert isinstance(info.value, FileNotFoundError)
    assert "no-such-profile-here" in str(info.value)


@pytest.mark.fault(
    section="engines-that-die",
    fault="SIGKILL to the controller with `restart_controller=False`",
    outcome="clients get `ControllerConnectionError`",
)
def test_the_controller_gone_raises_controller_connection_error(
    fresh_cluster: Callable[..., multiengine.Cluster],
) -> None:
    c = fresh_cluster(1, restart_controller=False)  # the controller stays gone
    mec = c.multiengine_client()
    assert_cluster_works(mec)
    assert c.controller is not None
    os.kill(c.controller.pid, signal.SIGKILL)
    c.controller.wait(10)
    with pytest.raises(ControllerConnectionError):
        call_within(lambda: mec.execute("a = 1"), message="execute with the controller gone")
    # a later call fails the same way, rather than hanging
    with pytest.raises(ControllerConnectionError):
        call_within(mec.get_ids, message="get_ids with the controller gone")
