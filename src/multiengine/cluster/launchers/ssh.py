"""``ssh``: engines (and optionally the controller) on named hosts, started over ssh.

Nothing is assumed shared with the remote host but the Python installation named by
the ``python`` option: engines get the controller's connection info on stdin
(``multiengine engine --connection-file - -n K``), one ssh connection per host, and stop
when that connection closes. A controller on a remote host (``controller_host``) writes
its connection files in a remote directory; the launcher copies them back over ssh.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from typing import Any

from ...wire.connection import ConnectionInfo, write_connection_file
from .base import LaunchError, ProcessLauncher, require_command, terminate

__all__ = ["SSHLauncher", "host_counts"]

BASE_OPTIONS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5"]


def host_counts(hosts: Any, n: int) -> dict[str, int]:
    """``{'host': count}`` as given, or ``n`` engines spread round-robin over a list of hosts."""
    if isinstance(hosts, dict):
        counts = {str(h): int(c) for h, c in hosts.items()}
        if any(c < 0 for c in counts.values()):
            raise ValueError(f"ssh launcher: engine counts must not be negative: {hosts!r}")
        return {h: c for h, c in counts.items() if c}
    if isinstance(hosts, str):
        hosts = hosts.split()
    if not hosts:
        raise ValueError(
            "ssh launcher: no hosts: set [launcher.ssh] hosts = {'host1' = 2, ...} "
            "or a list of hosts"
        )
    hosts = [str(h) for h in hosts]
    counts = dict.fromkeys(hosts, 0)
    for i in range(n):
        counts[hosts[i % len(hosts)]] += 1
    return {h: c for h, c in counts.items() if c}


def _without(argv: list[str], *flags: str) -> list[str]:
    """``argv`` without each ``--flag VALUE`` pair named."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        else:
            out.append(a)
    return out


class SSHLauncher(ProcessLauncher):
    """One ``ssh`` per host, running ``python -m multiengine engine --connection-file - -n K``."""

    name = "ssh"
    needs_connection_info = True
    options_doc = {
        "hosts": (
            "engines per host, {'host' = count, ...}, "
            "or a list of hosts that n engines are spread over"
        ),
        "python": "the remote Python (required: an absolute path on the remote hosts)",
        "ssh": "the ssh command (default: ssh)",
        "ssh_args": (
            "extra ssh arguments, a list "
            "(e.g. ['-i', 'KEY', '-o', 'StrictHostKeyChecking=accept-new'])"
        ),
        "user": "remote user name (default: ssh's own choice)",
        "workdir": "remote working directory of the engines (default: the remote home)",
        "controller_host": "run the controller on this host too (cluster start --launcher ssh)",
        "controller_dir": (
            "the remote controller's cluster directory (default: /tmp/multiengine-<profile>)"
        ),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.options.get("python"):
            raise ValueError(
                "ssh launcher: set `python`, the absolute path of the remote hosts' Python "
                "(e.g. [launcher.ssh] python = '/opt/venv/bin/python')"
            )
        self.counts = (
            host_counts(self.options.get("hosts"), self.n) if self.role == "engines" else {}
        )
        if self.role == "engines":
            self.n = sum(self.counts.values())
        self._fetched = False

    @classmethod
    def runs_controller(cls, options: dict[str, Any]) -> bool:
        return bool(options.get("controller_host"))

    def ssh_argv(self, host: str) -> list[str]:
        ssh = require_command(
            self.name, str(self.options.get("ssh", "ssh")), "install an OpenSSH client"
        )
        extra = self.options.get("ssh_args", [])
        if isinstance(extra, str):
            extra = shlex.split(extra)
        target = f"{self.options['user']}@{host}" if self.options.get("user") else host
        return [ssh, *BASE_OPTIONS, *map(str, extra), target]

    def remote(self, argv: list[str]) -> str:
        cmd = shlex.join([str(self.options["python"]), "-m", "multiengine", *argv])
        workdir = self.options.get("workdir")
        return f"cd {shlex.quote(str(workdir))} && exec {cmd}" if workdir else f"exec {cmd}"

    # ------------------------------------------------------------------ engines
    def start(self, connection: dict[str, Any] | None = None) -> None:
        if self.role == "controller":
            self._start_controller()
            return
        if connection is None:
            raise LaunchError("ssh launcher: engines need the controller's connection info")
        # Remote by definition: never the controller host's IPC endpoints (a host with the
        # same name, a container or a network namespace, could otherwise pick them).
        remote_info = {k: v for k, v in connection.items() if k not in ("ipc_addresses", "host")}
        line = (json.dumps(remote_info) + "\n").encode()
        base = _without(self.argv, "--cluster-dir", "--profile", "--connection-file")
        for host, count in self.counts.items():
            argv = [*base, "--connection-file", "-", "-n", str(count)]
            proc = self.spawn(
                [*self.ssh_argv(host), self.remote(argv)],
                f"ssh-engines-{host}.log",
                stdin=subprocess.PIPE,
            )
            assert proc.stdin is not None
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
            except BrokenPipeError:
                pass  # ssh has already failed; poll() reports it with its output

    def stop(self, timeout: float = 5.0) -> None:
        """Close each connection (the remote side stops its processes), then make sure."""
        for p in self.procs:
            if isinstance(p, subprocess.Popen) and p.stdin and not p.stdin.closed:
                try:
                    p.stdin.close()
                except BrokenPipeError:
                    pass
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in self.procs) and time.monotonic() < deadline:
            time.sleep(0.02)
        terminate(self.procs, 1.0)

    # ------------------------------------------------------------------ a remote controller
    @property
    def controller_host(self) -> str:
        host = self.options.get("controller_host")
        if not host:
            raise ValueError("ssh launcher: controller_host is not set")
        return str(host)

    def remote_dir(self) -> str:
        return str(
            self.options.get("controller_dir") or f"/tmp/multiengine-{self.cluster_dir.profile}"
        )

    def _start_controller(self) -> None:
        argv = [
            *_without(self.argv, "--cluster-dir", "--profile", "--parent-pid"),
            "--cluster-dir",
            self.remote_dir(),
            "--stdin-lifeline",
        ]
        self.spawn(
            [*self.ssh_argv(self.controller_host), self.remote(argv)],
            "controller.log",
            stdin=subprocess.PIPE,
        )

    def poll(self) -> str | None:
        why = super().poll()
        if why is None and self.role == "controller" and not self._fetched:
            self._fetch_connection_files()
        return why

    def _fetch_connection_files(self) -> None:
        """Copy the remote controller's connection files here once it has written them."""
        sec = f"{self.remote_dir()}/security"
        script = (
            f"cat {shlex.quote(sec + '/engine.json')} && echo @@@ "
            f"&& cat {shlex.quote(sec + '/client.json')}"
        )
        try:
            r = subprocess.run(
                [*self.ssh_argv(self.controller_host), script],
                capture_output=True,
                text=True,
                timeout=20,
                env=self.env,
            )
        except subprocess.TimeoutExpired:
            return
        if r.returncode != 0 or "@@@" not in r.stdout:
            return
        engine_text, client_text = r.stdout.split("@@@", 1)
        try:
            engine, client = json.loads(engine_text), json.loads(client_text)
        except ValueError:
            return  # caught between writes; the next poll reads them whole
        self.cluster_dir.create()
        write_connection_file(
            self.cluster_dir.engine_file, ConnectionInfo.from_json(engine, "remote engine.json")
        )
        write_connection_file(
            self.cluster_dir.client_file, ConnectionInfo.from_json(client, "remote client.json")
        )
        self._fetched = True

    def describe(self) -> str:
        if self.role == "controller":
            return f"ssh launcher (controller on {self.options.get('controller_host')})"
        return f"ssh launcher ({', '.join(f'{h}: {c}' for h, c in self.counts.items())})"
