"""Settings (multiengine.config): where each comes from, how a bad one is reported, how
they travel to the processes a cluster starts, and ``cluster start --daemon``'s ready
file. The CLI tests run the real ``python -m multiengine`` against ``$MULTIENGINE_DIR``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers import process_running, run_cli, wait_until

import multiengine
from multiengine.cluster.cluster import Cluster
from multiengine.config import ClusterConfig, ControllerConfig, EngineConfig, Settings
from multiengine.errors import ConfigError
from multiengine.runtime import DEFAULT_CONFIG, ClusterDir

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def parse(kind: type[Settings], *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    kind.add_arguments(parser)
    return parser.parse_args(list(argv))


def unique_profile(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def one_line_exit_2(r: Any) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return str(lines[0])


# ---------------------------------------------------------------- precedence
def test_defaults_when_nothing_is_given() -> None:
    assert ControllerConfig.from_sources() == ControllerConfig()
    c = ControllerConfig()
    assert (c.ip, c.curve, c.heartbeat_period, c.heartbeat_timeout) == ("127.0.0.1", "auto", 1.0, 3)
    assert (c.task_failure_penalty, c.task_timeout, c.port, c.reuse) == (1.0, 30.0, 0, False)
    assert EngineConfig() == EngineConfig.from_sources(env={}, toml={})
    assert (EngineConfig().timeout, EngineConfig().number) == (10.0, 1)


@pytest.mark.parametrize(
    ("field", "toml", "env", "flag", "values"),
    [
        ("heartbeat_period", 1.0, "2", "--heartbeat-period", (1.0, 2.0, 0.25)),
        ("ip", "10.0.0.1", "10.0.0.2", "--ip", ("10.0.0.1", "10.0.0.2", "10.0.0.3")),
        ("reuse", True, "no", "--reuse", (True, False, True)),
    ],
)
def test_command_line_over_environment_over_toml_over_default(
    field: str, toml: Any, env: str, flag: str, values: tuple[Any, Any, Any]
) -> None:
    from_toml, from_env, from_cli = values
    variable = "MULTIENGINE_" + field.upper()
    argv = [flag] if isinstance(from_cli, bool) else [flag, str(from_cli)]
    default = getattr(ControllerConfig(), field)
    assert getattr(ControllerConfig.from_sources(toml={}, env={}), field) == default
    got = ControllerConfig.from_sources(toml={field: toml}, env={})
    assert getattr(got, field) == from_toml
    got = ControllerConfig.from_sources(toml={field: toml}, env={variable: env})
    assert getattr(got, field) == from_env
    got = ControllerConfig.from_sources(
        toml={field: toml}, env={variable: env}, args=parse(ControllerConfig, *argv)
    )
    assert getattr(got, field) == from_cli


def test_an_empty_environment_variable_is_unset_and_engine_settings_have_their_own_table() -> None:
    got = ControllerConfig.from_sources(
        toml={"heartbeat_timeout": 5.0}, env={"MULTIENGINE_HEARTBEAT_TIMEOUT": ""}
    )
    assert got.heartbeat_timeout == 5.0
    got = EngineConfig.from_sources(
        toml={"timeout": 4}, env={"MULTIENGINE_LOG_LEVEL": "debug"}, args=parse(EngineConfig)
    )
    assert (got.timeout, got.log_level) == (4.0, "debug")


def test_process_settings_come_only_from_the_command_line() -> None:
    got = ControllerConfig.from_sources(env={"MULTIENGINE_PARENT_PID": "1"})
    assert got.parent_pid is None
    with pytest.raises(ConfigError, match="parent_pid can only be set on the command line"):
        ControllerConfig.from_sources(toml={"parent_pid": 1})
    assert EngineConfig.from_sources(env={"MULTIENGINE_NUMBER": "3"}).number == 1


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"heartbeat_period": 0}, "heartbeat_period must be greater than 0, not 0.0"),
        ({"heartbeat_period": -1}, "heartbeat_period must be greater than 0"),
        ({"heartbeat_timeout": 0}, "heartbeat_timeout must be greater than 0"),
        (
            {"heartbeat_period": 2, "heartbeat_timeout": 1},
            r"heartbeat_timeout \(1\) must be greater than heartbeat_period \(2\)",
        ),
        ({"heartbeat_timeout": 0.5}, r"heartbeat_timeout \(0.5\) must be greater than"),
        ({"task_timeout": 0}, "task_timeout must be greater than 0"),
        ({"task_failure_penalty": -0.1}, "task_failure_penalty must not be negative"),
        ({"curve": "maybe"}, "curve must be 'auto', 'on' or 'off', not 'maybe'"),
        ({"port": -1}, "port must be 0 .random. or between 1 and 65533"),
        ({"port": 65534}, "port must be 0 .random. or between 1 and 65533"),
        ({"parent_pid": 0}, "parent_pid must be a process id"),
        ({"log_level": "LOUD"}, "log_level must be one of DEBUG, INFO, WARNING, ERROR"),
        ({"ip": ""}, "ip must not be empty"),
        ({"heartbeat_period": "1"}, "heartbeat_period must be a number, not '1'"),
        ({"heartbeat_period": True}, "heartbeat_period must be a number, not True"),
        ({"heartbeat_period": float("nan")}, "heartbeat_period must be a finite number"),
        ({"port": 1.5}, "port must be a whole number"),
        ({"reuse": 1}, "reuse must be true or false"),
        ({"location": 5}, "location must be a string"),
    ],
)
def test_controller_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        ControllerConfig(**kwargs)
    assert isinstance(info.value, ValueError)
    assert set(info.value.settings) <= set(kwargs) | {"heartbeat_period"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"number": 0}, "number must be at least 1, not 0"),
        ({"timeout": 0}, "timeout must be greater than 0"),
        ({"log_level": "chatty"}, "log_level must be one of"),
        ({"mpi": "yes"}, "mpi must be true or false"),
    ],
)
def test_engine_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EngineConfig(**kwargs)


def test_configs_are_frozen_keyword_only_and_normalise_localhost() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ControllerConfig().ip = "0.0.0.0"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ControllerConfig("127.0.0.1")  # type: ignore[misc]
    assert ControllerConfig(ip="localhost").ip == "127.0.0.1"
    assert ControllerConfig(heartbeat_period=1).heartbeat_period == 1.0


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (
            {"args": ("--heartbeat-period", "-1")},
            r"heartbeat_period must be greater than 0, not -1.0 \(from --heartbeat-period\)",
        ),
        ({"args": ("--port", "x")}, r"port must be a whole number, not 'x' \(from --port\)"),
        (
            {"env": {"MULTIENGINE_HEARTBEAT_TIMEOUT": "0.1"}},
            r"heartbeat_timeout \(0.1\) must be greater than heartbeat_period \(1\) "
            r"\(from MULTIENGINE_HEARTBEAT_TIMEOUT\)",
        ),
        ({"env": {"MULTIENGINE_REUSE": "perhaps"}}, r"reuse must be true or false"),
        (
            {"toml": {"heartbeat_period": "fast"}},
            r"heartbeat_period must be a number, not 'fast' "
            r"\(from cluster.toml \[controller\] heartbeat_period\)",
        ),
        (
            {"toml": {"heartbeat_perod": 1}},
            r"cluster.toml \[controller\]: unknown setting 'heartbeat_perod' \(known: ip, ",
        ),
        (
            {"toml": {"heartbeat_period": 4.0}, "env": {"MULTIENGINE_HEARTBEAT_TIMEOUT": "2"}},
            r"\(from MULTIENGINE_HEARTBEAT_TIMEOUT and cluster.toml \[controller\] "
            r"heartbeat_period\)",
        ),
    ],
)
def test_errors_say_where_the_bad_value_came_from(sources: dict[str, Any], message: str) -> None:
    args = parse(ControllerConfig, *sources.get("args", ()))
    with pytest.raises(ConfigError, match=message):
        ControllerConfig.from_sources(
            toml=sources.get("toml"), env=sources.get("env", {}), args=args
        )


# ---------------------------------------------------------------- argv and cluster.toml
def test_to_argv_then_parse_gives_the_same_config() -> None:
    config = ControllerConfig(
        ip="0.0.0.0",
        location="node1",
        curve="off",
        port=47100,
        reuse=True,
        heartbeat_period=0.25,
        heartbeat_timeout=1.5,
        task_failure_penalty=0.05,
        task_timeout=7,
        parent_pid=os.getpid(),
        stdin_lifeline=True,
        log_level="DEBUG",
    )
    argv = config.to_argv()
    assert ControllerConfig.from_sources(args=parse(ControllerConfig, *argv), env={}) == config
    assert ControllerConfig().to_argv() == []
    engine = EngineConfig(connection_file="-", number=3, mpi=True, timeout=2.5)
    assert EngineConfig.from_sources(args=parse(EngineConfig, *engine.to_argv())) == engine
    assert engine.to_argv()[:4] == ["--connection-file", "-", "--number", "3"]


def test_to_argv_carries_a_default_that_overrides_what_the_process_would_read() -> None:
    env = {"MULTIENGINE_HEARTBEAT_PERIOD": "1", "MULTIENGINE_CURVE": "on"}
    inherited = ControllerConfig.from_sources(env=env)
    wanted = ControllerConfig.from_sources(env=env, args={"heartbeat_period": 0.5})
    argv = wanted.to_argv(inherited)
    assert argv == ["--curve", "on", "--heartbeat-period", "0.5"]
    assert ControllerConfig.from_sources(env=env, args=parse(ControllerConfig, *argv)) == wanted
    assert ControllerConfig(reuse=False).to_argv(ControllerConfig(reuse=True)) == ["--no-reuse"]


def test_default_cluster_toml_holds_the_dataclass_defaults() -> None:
    tables = tomllib.loads(DEFAULT_CONFIG)
    for kind in (ControllerConfig, EngineConfig, ClusterConfig):
        expected = {
            f.name: f.default
            for f in kind.fields()
            if not f.metadata["cli_only"] and f.default is not None
        }
        assert tables[kind.SECTION] == expected, kind.SECTION
        # and the commented-out ones name real settings
        for name in re.findall(r"^# (\w+) = ", kind.toml_table(), re.M):
            assert name in {f.name for f in kind.fields()}
    assert ControllerConfig.from_sources(toml=tables["controller"]) == ControllerConfig()
    assert EngineConfig.from_sources(toml=tables["engine"]) == EngineConfig()
    assert ClusterConfig.from_sources(toml=tables["cluster"]) == ClusterConfig()


def test_cluster_builds_both_configs_before_starting_anything(multiengine_dir: Path) -> None:
    with pytest.raises(ConfigError, match="heartbeat_period must be greater than 0"):
        Cluster(1, heartbeat_period=-1)
    with pytest.raises(ConfigError, match="timeout must be greater than 0"):
        Cluster(1, timeout=0)
    env = {"MULTIENGINE_HEARTBEAT_PERIOD": "0.75", "MULTIENGINE_LOG_LEVEL": "WARNING"}
    c = Cluster(1, heartbeat_timeout=6, heartbeat_period=0.5, env=env, log_level="INFO")
    assert c.controller_config.heartbeat_period == 0.5
    assert c.controller_config.parent_pid == os.getpid()
    argv = c._controller_args()
    assert argv[:3] == ["controller", "--cluster-dir", str(c.cluster_dir.path)]
    assert ControllerConfig.from_sources(
        env=c.env, args=parse(ControllerConfig, *argv[3:])
    ) == dataclasses.replace(c.controller_config)
    assert "--ip" not in argv and "--heartbeat-timeout" in argv
    assert not c.cluster_dir.exists(), "nothing is made before start()"


def test_docs_list_every_setting() -> None:
    text = DOCS.read_text()
    for kind in (ControllerConfig, EngineConfig, ClusterConfig):
        table = settings_table(kind)
        assert table in text, (
            f"docs/cli.md should hold this table of the {kind.__name__} settings:\n\n{table}"
        )


def settings_table(kind: type[Settings]) -> str:
    """The docs' table of one config's settings, generated from its fields."""
    rows = [
        "| setting | option | environment | `cluster.toml` | default | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for f in kind.fields():
        cli_only = f.metadata["cli_only"]
        flags = ", ".join(f"`{flag}`" for flag in kind.flags(f))
        if isinstance(f.default, bool) and not cli_only:
            flags += f", `--no-{kind.flags(f)[-1][2:]}`"
        env = "—" if cli_only else f"`{kind.env_var(f)}`"
        toml = "—" if cli_only else f"`[{kind.SECTION}] {f.name}`"
        default = kind.default_text(f)
        rows.append(f"| `{f.name}` | {flags} | {env} | {toml} | {default} | {f.metadata['help']} |")
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------- the real command line
def test_cli_bad_command_line_setting_is_one_line_and_exit_2() -> None:
    line = one_line_exit_2(run_cli("controller", "--heartbeat-period", "-1"))
    assert line == (
        "multiengine: error: heartbeat_period must be greater than 0, not -1.0 "
        "(from --heartbeat-period)"
    )
    line = one_line_exit_2(run_cli("engine", "--timeout", "soon"))
    assert "timeout must be a number, not 'soon' (from --timeout)" in line


def test_cli_bad_toml_or_environment_value_is_one_line_and_exit_2(multiengine_dir: Path) -> None:
    profile = unique_profile("badtoml")
    cdir = ClusterDir.for_profile(profile).create()
    toml = cdir.config_file.read_text()
    cdir.config_file.write_text(toml.replace("heartbeat_timeout = 3.0", "heartbeat_timeout = 0.1"))
    for command in (("controller",), ("cluster", "start", "--daemon")):
        line = one_line_exit_2(run_cli(*command, "-p", profile))
        assert line.startswith("multiengine: error: heartbeat_timeout (0.1) must be greater")
        assert "cluster.toml [controller] heartbeat_timeout" in line
    assert not cdir.cluster_pid_file.exists() and not cdir.client_file.exists()

    cdir.config_file.write_text(toml.replace("timeout = 10.0", "timeout = 'long'"))
    line = one_line_exit_2(run_cli("cluster", "start", "-p", profile))
    assert "timeout must be a number, not 'long'" in line
    cdir.config_file.write_text("[controller\n")
    line = one_line_exit_2(run_cli("controller", "-p", profile))
    assert "cluster.toml is not valid TOML" in line

    cdir.config_file.write_text(toml)
    r = run_cli("cluster", "start", "-p", profile, env={"MULTIENGINE_CURVE": "sometimes"})
    line = one_line_exit_2(r)
    assert "curve must be 'auto', 'on' or 'off', not 'sometimes' (from MULTIENGINE_CURVE)" in line
    assert not cdir.cluster_pid_file.exists()


def test_cli_daemon_waits_for_the_ready_file(multiengine_dir: Path) -> None:
    profile = unique_profile("ready")
    cdir = ClusterDir.for_profile(profile)
    pid = None
    try:
        r = run_cli(
            "cluster", "start", "-p", profile, "-n", "2", "--daemon", "--heartbeat-period", "0.3"
        )
        assert r.returncode == 0, r.stdout + r.stderr
        pid = cdir.read_pid(cdir.cluster_pid_file)
        assert r.stdout.strip() == (
            f"cluster '{profile}' started in the background: 2 engines (pid {pid})"
        )
        ready = json.loads(cdir.ready_file.read_text())
        assert ready["pid"] == pid and ready["engines"] == 2 and ready["launcher"] == "local"
        assert not [p for p in cdir.pid.iterdir() if p.name.endswith(".tmp")]

        r = run_cli("cluster", "status", "-p", profile)
        assert r.returncode == 0, r.stderr
        assert "2 engines" in r.stdout
        with multiengine.MultiEngineClient(profile=profile, timeout=10) as mec:
            controller = mec.status()["pid"]
        argv = Path(f"/proc/{controller}/cmdline").read_bytes().split(b"\0")
        assert argv[argv.index(b"--heartbeat-period") + 1] == b"0.3", argv

        r = run_cli("cluster", "stop", "-p", profile, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert not cdir.ready_file.exists() and not cdir.cluster_pid_file.exists()
    finally:
        if pid and process_running(pid):
            os.kill(pid, signal.SIGINT)
            wait_until(lambda: not process_running(pid), message=f"cluster process {pid} to stop")


def test_cli_daemon_ignores_a_stale_ready_file_and_reports_a_failed_start(
    multiengine_dir: Path,
) -> None:
    profile = unique_profile("stale")
    cdir = ClusterDir.for_profile(profile).create()
    cdir.write_ready(engines=5)  # as if left by a start killed with SIGKILL (this test's pid)
    r = run_cli("cluster", "start", "-p", profile, "-n", "1", "--daemon")
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert "started in the background: 1 engines" in r.stdout, r.stdout
    finally:
        assert run_cli("cluster", "stop", "-p", profile, timeout=30).returncode == 0
    assert not cdir.ready_file.exists()

    r = run_cli("cluster", "start", "-p", profile, "--daemon", "--launcher", "nosuch")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.startswith("multiengine: error: the cluster did not start: "), r.stderr
    assert "unknown launcher 'nosuch'" in r.stderr
    assert not cdir.ready_file.exists() and not cdir.cluster_pid_file.exists()
