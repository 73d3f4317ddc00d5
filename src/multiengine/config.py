"""Settings, defined once: one frozen, keyword-only dataclass per kind of process.

    ControllerConfig   what ``multiengine controller`` runs with
    EngineConfig       what ``multiengine engine`` runs with
    ClusterConfig      what ``multiengine cluster start`` and ``Cluster`` run with: how many
                       engines, which launcher, and how the engines are supervised

Every default is written here and nowhere else. A setting comes from, first match wins:

1. the command line (``--heartbeat-period 1``; the options are generated from the fields);
2. the environment, ``MULTIENGINE_<FIELD>`` (``MULTIENGINE_HEARTBEAT_PERIOD=1``; empty
   means unset);
3. the cluster directory's ``cluster.toml``, section ``[controller]``, ``[engine]`` or
   ``[cluster]``;
4. the default below.

Settings that belong to one process (``parent_pid``, ``stdin_lifeline``, an engine's
``connection_file``, ``number`` and ``mpi``) come from the command line only.
Constructing a config validates it: a bad value raises
:class:`~multiengine.errors.ConfigError` (a ``ValueError``) that names the setting and,
from :meth:`~Settings.from_sources`, where it came from; the command line prints it
as one line and exits 2. :class:`~multiengine.cluster.cluster.Cluster` builds both
configs in the user's process, before starting anything, and hands the processes it
launches their settings with :meth:`~Settings.to_argv`.

It is long because it is the one place every setting and its parsing live: three
configs of some forty fields, each with its help, kind and checks, and the machinery
that turns them into options, environment names, ``cluster.toml`` and argv. Split, the
defaults would be in several places again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import types
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Self, get_type_hints

from .errors import ConfigError

__all__ = [
    "ClusterConfig",
    "ControllerConfig",
    "EngineConfig",
    "Settings",
    "ENV_PREFIX",
    "SHM_POOL_LIMIT",
    "SHM_RECYCLE_LIMIT",
    "SHM_THRESHOLD",
    "format_size",
    "is_binary_size",
    "parse_size",
    "parse_switch",
    "env_switch",
]

ENV_PREFIX = "MULTIENGINE_"
CURVE_MODES = ("auto", "on", "off")
MAX_HEARTBEAT = 6500.0  # ZMTP carries the heartbeat TTL in deciseconds, 16 bits
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# Large data between processes of one host (multiengine.wire.shm): out-of-band buffers of
# at least SHM_THRESHOLD bytes in total travel through shared memory (a client's and an
# engine's ``$MULTIENGINE_SHM_THRESHOLD``: a size, or 0/off for never); a process keeps
# at most SHM_POOL_LIMIT bytes of blocks for reuse and sends over the network past it.
SHM_THRESHOLD = 1 << 20
SHM_POOL_LIMIT = 4 << 30
# ...and at most SHM_RECYCLE_LIMIT bytes of received copies whose values are gone, to
# copy the next ones into without page faults.
SHM_RECYCLE_LIMIT = 256 << 20
# Small commands between a client and an engine of one host go straight over IPC, the
# controller told afterwards (docs/protocol.md §6, "A direct path on one host"): a
# client's and an engine's ``$MULTIENGINE_DIRECT`` (on/off).
DIRECT_PATH = True
# An engine of the controller's host sends and takes its commands over a Unix stream
# rather than ZeroMQ (engine/link.py): an engine's ``$MULTIENGINE_ENGINE_STREAM`` (on/off).
ENGINE_STREAM = True


def parse_switch(text: str) -> bool:
    """An on/off setting's text: 1/true/yes/on or 0/false/no/off (any case); ValueError
    for anything else."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{text!r} is neither on nor off")


def env_switch(variable: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    """The on/off setting ``$variable`` of ``env`` (this process's environment by
    default), else ``default``; ConfigError naming the variable if it is not on/off."""
    text = (os.environ if env is None else env).get(variable, "").strip()
    if not text:
        return default
    try:
        return parse_switch(text)
    except ValueError as e:
        raise ConfigError(f"${variable}: {e}") from None


def setting(
    default: Any,
    doc: str,
    *,
    flags: tuple[str, ...] = (),
    metavar: str | None = None,
    cli_only: bool = False,
    default_doc: str | None = None,
    example: Any = None,
) -> Any:
    """A field with what the command line, the docs and ``cluster.toml`` need to know.

    ``flags`` default to ``--field-name``; ``default_doc`` describes a ``None`` default;
    ``example`` is shown (commented out) in the default ``cluster.toml`` for such fields.
    """
    meta = {
        "help": doc,
        "flags": flags,
        "metavar": metavar,
        "cli_only": cli_only,
        "default_doc": default_doc,
        "example": example,
    }
    return dataclasses.field(default=default, metadata=meta)


class Settings:
    """What both configs share: reading sources, the command line, ``cluster.toml``."""

    SECTION: ClassVar[str]  # the cluster.toml table

    # ------------------------------------------------------------ fields
    @classmethod
    def fields(cls) -> tuple[dataclasses.Field[Any], ...]:
        return dataclasses.fields(cls)  # type: ignore[arg-type]

    @classmethod
    def _type(cls, name: str) -> type:
        """The field's type without ``None`` (``str | None`` -> ``str``)."""
        return _field_types(cls)[name]

    @staticmethod
    def flags(f: dataclasses.Field[Any]) -> tuple[str, ...]:
        return f.metadata["flags"] or (f"--{f.name.replace('_', '-')}",)

    @staticmethod
    def env_var(f: dataclasses.Field[Any]) -> str:
        return ENV_PREFIX + f.name.upper()

    @staticmethod
    def default_text(f: dataclasses.Field[Any]) -> str:
        """The default as the docs and ``--help`` show it."""
        if f.metadata["default_doc"]:
            return str(f.metadata["default_doc"])
        if f.default is None:
            return "none"
        if isinstance(f.default, bool):
            return "on" if f.default else "off"
        return str(f.default)

    # ------------------------------------------------------------ checking
    def __post_init__(self) -> None:
        for f in self.fields():
            value = getattr(self, f.name)
            kind = self._type(f.name)
            if value is None and f.default is None:
                continue
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                object.__setattr__(self, f.name, value)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise ConfigError(f"{f.name} must be {_KIND_NAMES[kind]}, not {value!r}", (f.name,))
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, not {value!r}", (f.name,))
        self.validate()

    def validate(self) -> None:
        """Checks beyond the types; raise :class:`ConfigError` naming the settings."""

    @staticmethod
    def _positive(value: float, name: str) -> None:
        if value <= 0:
            raise ConfigError(f"{name} must be greater than 0, not {value!r}", (name,))

    @staticmethod
    def _log_level(value: str, name: str = "log_level") -> None:
        if value.upper() not in LOG_LEVELS:
            raise ConfigError(
                f"{name} must be one of {', '.join(LOG_LEVELS)}, not {value!r}", (name,)
            )

    # ------------------------------------------------------------ sources
    @classmethod
    def from_sources(
        cls,
        *,
        toml: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        args: argparse.Namespace | Mapping[str, Any] | None = None,
    ) -> Self:
        """The config from, first match wins: ``args`` (an argparse namespace, or a
        mapping of keyword values; ``None`` means not given), ``env`` (``MULTIENGINE_*``
        variables), ``toml`` (this config's ``cluster.toml`` table), the defaults."""
        given = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
        from_cli = isinstance(args, argparse.Namespace)
        toml = dict(toml or {})
        env = env or {}
        known = {f.name: f for f in cls.fields()}
        where = f"cluster.toml [{cls.SECTION}]"
        for key in toml:
            if key not in known:
                raise ConfigError(
                    f"{where}: unknown setting {key!r} "
                    f"(known: {', '.join(n for n, f in known.items() if not _cli_only(f))})"
                    + _elsewhere(key)
                )
            if _cli_only(known[key]):
                raise ConfigError(f"{where}: {key} can only be set on the command line")
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for name, f in known.items():
            textual = True  # argv and the environment hold text; toml and keywords, values
            if given.get(name) is not None:
                value = given[name]
                origin[name] = cls.flags(f)[-1] if from_cli else f"{name}={value!r}"
                textual = from_cli
            elif not _cli_only(f) and env.get(cls.env_var(f)):
                value = env[cls.env_var(f)]
                origin[name] = cls.env_var(f)
            elif name in toml:
                value = toml[name]
                origin[name] = f"{where} {name}"
                textual = False
            else:
                continue
            if textual and isinstance(value, str) and cls._type(name) is not str:
                value = cls._parse(name, value, origin[name])
            values[name] = value
        try:
            return cls(**values)
        except ConfigError as e:
            said = [f"{origin[n]}" for n in e.settings if n in origin]
            raise ConfigError(f"{e} (from {' and '.join(said)})" if said else str(e), e.settings)

    @classmethod
    def _parse(cls, name: str, text: str, origin: str) -> Any:
        """A setting's text (command line or environment) as its field's type."""
        kind = cls._type(name)
        try:
            if kind is bool:
                return parse_switch(text)
            return kind(text.strip())
        except ValueError:
            raise ConfigError(
                f"{name} must be {_KIND_NAMES[kind]}, not {text!r} (from {origin})", (name,)
            ) from None

    # ------------------------------------------------------------ the command line
    @classmethod
    def add_arguments(
        cls, parser: argparse.ArgumentParser, names: Iterable[str] | None = None
    ) -> None:
        """One option per field (or per field named in ``names``). Options default to
        ``None`` (not given), so :meth:`from_sources` can tell them from the defaults."""
        wanted = set(names) if names is not None else None
        for f in cls.fields():
            if wanted is not None and f.name not in wanted:
                continue
            kind = cls._type(f.name)
            text = f.metadata["help"]
            if f.default is not None or f.metadata["default_doc"]:
                text += f" (default: {cls.default_text(f)})"
            if kind is bool:
                action: Any = "store_true" if _cli_only(f) else argparse.BooleanOptionalAction
                parser.add_argument(
                    *cls.flags(f), dest=f.name, action=action, default=None, help=text
                )
            else:
                parser.add_argument(
                    *cls.flags(f),
                    dest=f.name,
                    default=None,
                    metavar=f.metadata["metavar"] or f.name.upper(),
                    help=text,
                )

    @classmethod
    def argv_for(cls, values: Mapping[str, Any]) -> list[str]:
        """Command-line options that set each of ``values`` (field name -> value)."""
        known = {f.name: f for f in cls.fields()}
        argv: list[str] = []
        for name, value in values.items():
            flag = cls.flags(known[name])[-1]
            if isinstance(value, bool):
                argv.append(flag if value else f"--no-{flag[2:]}")
            elif value is not None:
                argv += [flag, str(value)]
        return argv

    def to_argv(self, inherited: Self | None = None) -> list[str]:
        """Command-line options for every setting that differs from its default, and
        for every one that differs from ``inherited`` (what the launched process would
        read from its environment and ``cluster.toml`` by itself), so that a process
        given them runs with exactly this config."""
        return self.argv_for(
            {
                f.name: getattr(self, f.name)
                for f in self.fields()
                if getattr(self, f.name) != f.default
                or (inherited is not None and getattr(self, f.name) != getattr(inherited, f.name))
            }
        )

    # ------------------------------------------------------------ cluster.toml
    @classmethod
    def toml_table(cls) -> str:
        """This config's table of the default ``cluster.toml``: each setting with its
        default (commented out where the default is "none") and its help."""
        lines = [f"[{cls.SECTION}]"]
        for f in cls.fields():
            if _cli_only(f):
                continue
            if f.default is None:
                shown = f"# {f.name} = {_toml_value(f.metadata['example'])}"
            else:
                shown = f"{f.name} = {_toml_value(f.default)}"
            lines.append(f"{shown:<28} # {f.metadata['help']}")
        return "\n".join(lines) + "\n"


def _elsewhere(key: str) -> str:
    """A hint for ``[cluster] engine_ipython``: the table the setting lives in."""
    for kind in Settings.__subclasses__():
        table, _, name = key.partition("_")
        if table == kind.SECTION and any(
            f.name == name and not _cli_only(f) for f in kind.fields()
        ):
            return f"; did you mean {name} in the [{table}] table?"
    return ""


_TYPES: dict[type, dict[str, type]] = {}


def _field_types(cls: type) -> dict[str, type]:
    """Each field's type without ``None`` (``str | None`` -> ``str``), once per class."""
    if cls not in _TYPES:
        found = {}
        for name, hint in get_type_hints(cls).items():
            if isinstance(hint, types.UnionType):
                hint = next(t for t in hint.__args__ if t is not type(None))
            found[name] = hint
        _TYPES[cls] = found
    return _TYPES[cls]


_KIND_NAMES = {
    float: "a number",
    int: "a whole number",
    bool: "true or false",
    str: "a string",
}


def _cli_only(f: dataclasses.Field[Any]) -> bool:
    return bool(f.metadata["cli_only"])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ControllerConfig(Settings):
    """How a controller listens, watches engines and schedules tasks."""

    SECTION: ClassVar[str] = "controller"

    ip: str = setting(
        "127.0.0.1",
        "interface to bind: 0.0.0.0 or * binds all, localhost means 127.0.0.1",
        metavar="ADDR",
    )
    location: str | None = setting(
        None,
        "host or address engines and clients connect to",
        metavar="HOST",
        default_doc="the ip; this host's name when binding all interfaces",
        example="node1",
    )
    curve: str = setting(
        "auto",
        "CurveZMQ encryption: auto = on whenever ip is not loopback; on; off",
        metavar="{auto,on,off}",
    )
    port: int = setting(
        0,
        "first of three consecutive ports (client, engine, heartbeat); 0 = random free ports",
        metavar="N",
    )
    reuse: bool = setting(
        False,
        "reuse the key and ports of existing connection files, and keep them on exit",
    )
    restore: bool = setting(
        False,
        "take up where this cluster directory's last controller stopped: its key, ports "
        "and IPC endpoints (engines and clients reconnect by themselves), results.db's "
        "results and history, and its unfinished tasks (run again)",
        cli_only=True,
    )
    heartbeat_period: float = setting(
        1.0, "seconds between engine heartbeats (ZMTP pings, answered by libzmq)", metavar="S"
    )
    heartbeat_timeout: float = setting(
        3.0, "seconds of silence after which an engine is unregistered", metavar="S"
    )
    engine_id_grace: float = setting(
        300.0,
        "seconds a lost engine's id stays reserved for it (or for an engine asking for it)",
        metavar="S",
    )
    task_failure_penalty: float = setting(
        1.0,
        "seconds before a task that failed on an engine is offered to it again",
        metavar="S",
    )
    task_timeout: float = setting(
        30.0,
        "seconds a task may wait for an engine that meets its dependencies",
        metavar="S",
    )
    result_memory_budget: str = setting(
        "1GiB",
        "memory for results kept for clients (non-blocking calls, tasks); past it they are "
        "read back from results.db in the cluster directory, where every kept result is",
        metavar="SIZE",
    )
    history_limit: int = setting(
        1_000_000,
        "jobs and tasks whose record results.db keeps (the oldest go first)",
        metavar="N",
    )
    parent_pid: int | None = setting(
        None,
        "stop when this process has gone (launchers set it)",
        metavar="PID",
        cli_only=True,
    )
    stdin_lifeline: bool = setting(
        False,
        "stop when stdin closes (the ssh launcher sets it for a controller on another host)",
        cli_only=True,
    )
    log_level: str = setting("INFO", "DEBUG, INFO, WARNING or ERROR", metavar="LEVEL")

    def __post_init__(self) -> None:
        if self.ip == "localhost":
            object.__setattr__(self, "ip", "127.0.0.1")
        super().__post_init__()

    @property
    def result_memory_budget_bytes(self) -> int:
        return parse_size(self.result_memory_budget)

    def validate(self) -> None:
        if not self.ip:
            raise ConfigError("ip must not be empty", ("ip",))
        if self.curve not in CURVE_MODES:
            raise ConfigError(
                f"curve must be 'auto', 'on' or 'off', not {self.curve!r}", ("curve",)
            )
        if not (self.port == 0 or 1 <= self.port <= 65533):
            raise ConfigError(
                f"port must be 0 (random) or between 1 and 65533 (it uses three), not {self.port}",
                ("port",),
            )
        for name in ("heartbeat_period", "heartbeat_timeout", "task_timeout"):
            self._positive(getattr(self, name), name)
        if self.heartbeat_timeout > MAX_HEARTBEAT:
            raise ConfigError(
                f"heartbeat_timeout must be at most {MAX_HEARTBEAT:g} s (a ZMTP limit), "
                f"not {self.heartbeat_timeout!r}",
                ("heartbeat_timeout",),
            )
        if self.engine_id_grace < 0:
            raise ConfigError(
                f"engine_id_grace must not be negative, not {self.engine_id_grace!r}",
                ("engine_id_grace",),
            )
        if self.heartbeat_timeout <= self.heartbeat_period:
            raise ConfigError(
                f"heartbeat_timeout ({self.heartbeat_timeout:g}) must be greater than "
                f"heartbeat_period ({self.heartbeat_period:g})",
                ("heartbeat_timeout", "heartbeat_period"),
            )
        if self.task_failure_penalty < 0:
            raise ConfigError(
                f"task_failure_penalty must not be negative, not {self.task_failure_penalty!r}",
                ("task_failure_penalty",),
            )
        try:
            parse_size(self.result_memory_budget)
        except ValueError as e:
            raise ConfigError(f"result_memory_budget: {e}", ("result_memory_budget",)) from None
        if self.history_limit < 1:
            raise ConfigError(
                f"history_limit must be at least 1, not {self.history_limit}", ("history_limit",)
            )
        if self.parent_pid is not None and self.parent_pid <= 0:
            raise ConfigError(
                f"parent_pid must be a process id, not {self.parent_pid}", ("parent_pid",)
            )
        self._log_level(self.log_level)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EngineConfig(Settings):
    """Where an engine finds its controller, and how long it waits for it."""

    SECTION: ClassVar[str] = "engine"

    connection_file: str | None = setting(
        None,
        "engine.json to use; '-' reads it from stdin, starts --number engines with it and "
        "stops them when stdin closes (the ssh launcher)",
        metavar="PATH|-",
        cli_only=True,
        default_doc="$MULTIENGINE_CONNECTION, else the cluster directory's engine.json",
    )
    number: int = setting(
        1,
        "with --connection-file -: how many engines to start",
        flags=("-n", "--number"),
        metavar="N",
        cli_only=True,
    )
    mpi: bool = setting(
        False, "initialise mpi4py and ask for the MPI rank as engine id", cli_only=True
    )
    id: int | None = setting(
        None,
        "ask the controller for this engine id (a restarted engine asks for its old one)",
        metavar="N",
        cli_only=True,
    )
    timeout: float = setting(
        10.0,
        "seconds to wait for the connection file and for the controller to answer",
        metavar="S",
    )
    reconnect_timeout: float = setting(
        300.0,
        "seconds an engine that lost its controller keeps trying to register again",
        metavar="S",
    )
    ipython: bool = setting(
        False,
        "run code through IPython: magics, shell commands (!cmd) and rich display (display(), "
        "matplotlib figures) sent back to the client; needs IPython",
    )
    batch_scheduling: bool = setting(
        True,
        "run as SCHED_BATCH on Linux (same CPU share; a woken engine does not preempt "
        "what runs): fewer context switches with many engines on one host",
    )
    log_level: str = setting("INFO", "DEBUG, INFO, WARNING or ERROR", metavar="LEVEL")

    def validate(self) -> None:
        if self.number < 1:
            raise ConfigError(f"number must be at least 1, not {self.number}", ("number",))
        if self.id is not None and self.id < 0:
            raise ConfigError(f"id must not be negative, not {self.id}", ("id",))
        self._positive(self.timeout, "timeout")
        self._positive(self.reconnect_timeout, "reconnect_timeout")
        self._log_level(self.log_level)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterConfig(Settings):
    """What a cluster is made of, and how the process that started it keeps it whole:
    engines that die are started again under their id, an engine past its memory limit
    is restarted, a controller that crashes is started again (docs/reliability.md)."""

    SECTION: ClassVar[str] = "cluster"

    engines: int = setting(
        2, "engines `cluster start` starts", flags=("-n", "--number"), metavar="N"
    )
    launcher: str = setting(
        "local", "how engines start: local, mpi, slurm, sge, pbs, ssh", metavar="NAME"
    )
    restart_engines: bool = setting(
        True, "start an engine that dies (local launcher) again, under the same id"
    )
    engine_restarts: int = setting(
        5, "restarts of one engine within an hour, after which it stays down", metavar="N"
    )
    engine_memory_limit: str | None = setting(
        None,
        "restart a local engine whose memory (RSS) passes this size, e.g. 500MB or 2GiB",
        metavar="SIZE",
        example="2GiB",
    )
    restart_controller: bool = setting(
        True, "start a controller that crashes (local) again, with --restore"
    )
    fork_server: bool = setting(
        True, "fork local engines from one pre-imported template process (fast start)"
    )

    def validate(self) -> None:
        if self.engines < 0:
            raise ConfigError(f"engines must not be negative, not {self.engines}", ("engines",))
        if not self.launcher:
            raise ConfigError("launcher must not be empty", ("launcher",))
        if self.engine_restarts < 0:
            raise ConfigError(
                f"engine_restarts must not be negative, not {self.engine_restarts}",
                ("engine_restarts",),
            )
        if self.engine_memory_limit is not None:
            try:
                parse_size(self.engine_memory_limit)
            except ValueError as e:
                raise ConfigError(f"engine_memory_limit: {e}", ("engine_memory_limit",)) from None

    @property
    def memory_limit(self) -> int | None:
        """``engine_memory_limit`` in bytes (None: no limit)."""
        if self.engine_memory_limit is None:
            return None
        return parse_size(self.engine_memory_limit)

    def memory_text(self, n: float) -> str:
        """``n`` bytes in the units ``engine_memory_limit`` was written in."""
        return format_size(n, is_binary_size(self.engine_memory_limit or ""))


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
}


def parse_size(text: str) -> int:
    """Bytes in a size: ``"500MB"`` (10^6), ``"2GiB"`` (2^30), ``"1.5 GB"``, ``"800000"``
    (bytes); ``K``/``M``/``G`` alone are binary, as in ``ulimit``. ValueError if it is none."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = m[2].lower() if m else ""
    if m is None or unit not in _SIZE_UNITS:
        raise ValueError(
            f"{text!r} is not a size: write a number of bytes, or one with a unit such as "
            "500MB, 2GiB (KB, MB, GB, TB; KiB, MiB, GiB, TiB)"
        )
    value = int(float(m[1]) * _SIZE_UNITS[unit])
    if value <= 0:
        raise ValueError(f"{text!r} is not a size greater than 0")
    return value


def format_size(n: float, binary: bool = False) -> str:
    """``612 MB`` (or ``584 MiB`` with ``binary``; ``1.5 GB``): what messages show."""
    base, units = (
        (1024, ("B", "KiB", "MiB", "GiB", "TiB"))
        if binary
        else (1000, ("B", "KB", "MB", "GB", "TB"))
    )
    value, unit = float(n), units[0]
    for unit in units:
        if value < base or unit == units[-1]:
            break
        value /= base
    shown = f"{value:.0f}" if value >= 10 else f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{shown} {unit}"


def is_binary_size(text: str) -> bool:
    """Whether a size was written in binary units (``2GiB``, ``512M``)."""
    unit = re.sub(r"[^a-z]", "", str(text).lower())
    return unit.endswith("ib") or unit in ("k", "m", "g", "t")
