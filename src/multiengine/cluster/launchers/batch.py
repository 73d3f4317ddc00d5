"""What the batch systems share: render a job script from a template, submit it, parse
the job id, ask whether the job is still there, cancel it.

Templates use :class:`string.Template`: ``${n}``, ``${engine_command}``,
``${cluster_dir}``, ``${log_dir}``, ``${job_name}``, ``${options}`` (the scheduler lines
built from the launcher's options) and every launcher option by name; ``$$`` is a
literal ``$``. A custom template is given with the ``template`` option (a path).
"""

from __future__ import annotations

import re
import shlex
import string
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from .base import Launcher, LaunchError, require_command, run_command, tail

__all__ = ["BatchLauncher"]


class BatchLauncher(Launcher):
    """Engines started by a batch job; subclasses give the template and the commands."""

    submit_cmd: ClassVar[str]
    cancel_cmd: ClassVar[str]
    default_template: ClassVar[str]
    directive: ClassVar[str]  # "#SBATCH", "#$", "#PBS"
    job_id_pattern: ClassVar[str] = r"\d+"
    install_hint: ClassVar[str]
    common_options: ClassVar[dict[str, str]] = {
        "template": (
            "path of a job script template (default: the built-in one, see docs/launchers.md)"
        ),
        "job_name": "job name (default: multiengine-<profile>)",
        "queue": "queue or partition to submit to",
        "time": "wall-clock limit, in the scheduler's own format",
        "extra": (
            "further scheduler directives, a list of option strings "
            "(each becomes one directive line)"
        ),
        "python": "interpreter the engines run (default: this one; give an absolute path)",
        "submit_args": "extra arguments for the submit command, a list",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job_id: str | None = None
        self.script_path: Path | None = None
        self.submit_output = ""
        self._gone: str | None = None
        self._last_check = 0.0

    # ------------------------------------------------------------------ the script
    def directives(self) -> list[str]:
        """The scheduler lines made from the options (queue, time, extra)."""
        return [f"{self.directive} {opt}" for opt in self.extra()]

    def extra(self) -> list[str]:
        extra = self.options.get("extra", [])
        if isinstance(extra, str):
            extra = [extra]
        return [str(e) for e in extra]

    def variables(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in self.options.items() if isinstance(v, (str, int, float))},
            "n": self.n,
            "engine_command": shlex.join(self.command()),
            "cluster_dir": str(self.cluster_dir.path),
            "log_dir": str(self.log_dir),
            "job_name": self.options.get("job_name") or f"multiengine-{self.cluster_dir.profile}",
            "options": "\n".join(self.directives()),
            "python": self.python(),
        }

    def render(self) -> str:
        """The job script this launcher would submit."""
        path = self.options.get("template")
        text = Path(str(path)).expanduser().read_text() if path else self.default_template
        variables = self.variables()
        try:
            return string.Template(text).substitute(variables)
        except (KeyError, ValueError) as e:
            raise LaunchError(
                f"{self.name} launcher: the job template {path or '(built-in)'} uses an unknown "
                f"or malformed variable: {e}"
            ) from None

    def parse_job_id(self, output: str) -> str:
        m = re.search(self.job_id_pattern, output)
        if not m:
            raise LaunchError(
                f"{self.name} launcher: no job id in the output of {self.submit_cmd}:\n"
                f"{output.strip()}"
            )
        return m.group(0)

    # ------------------------------------------------------------------ the job
    def start(self, connection: dict[str, Any] | None = None) -> None:
        submit = require_command(self.name, self.submit_cmd, self.install_hint)
        self.script_path = self.log_dir / f"{self.name}-job-{self.first}.sh"
        self.script_path.write_text(self.render())
        self.script_path.chmod(0o700)
        args = [str(a) for a in self.options.get("submit_args", [])]
        r = run_command(
            self.name,
            [submit, *self.submit_flags(), *args, str(self.script_path)],
            env=self.env,
            cwd=str(self.log_dir),
        )
        self.submit_output = (r.stdout + r.stderr).strip()
        self.job_id = self.parse_job_id(r.stdout)
        self.started_at = time.monotonic()

    def submit_flags(self) -> list[str]:
        return []

    def poll(self) -> str | None:
        if self.job_id is None or self._gone:
            return self._gone
        now = time.monotonic()
        if (
            now - self._last_check < 0.5
        ):  # the scheduler's commands are slow; ask twice a second at most
            return None
        self._last_check = now
        state = self.job_state()
        if state is not None:
            self._gone = f"{self.name} job {self.job_id} is no longer running ({state})"
        return self._gone

    @abstractmethod
    def job_state(self) -> str | None:
        """None while the job is queued or running; else its final state, as the scheduler says."""

    def stop(self, timeout: float = 10.0) -> None:
        if self.job_id is None or self._gone:
            return
        timeout = max(timeout, 15.0)  # a scheduler takes its time to clear a cancelled job
        cancel = require_command(self.name, self.cancel_cmd, self.install_hint)
        try:
            run_command(self.name, [cancel, self.job_id], env=self.env)
        except LaunchError:
            pass  # the job may have ended on its own meanwhile; the wait below tells
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.job_state()
            if state is not None:
                self._gone = f"{self.name} job {self.job_id} was cancelled ({state})"
                return
            time.sleep(0.25)
        raise LaunchError(
            f"{self.name} launcher: job {self.job_id} was still there "
            f"{timeout:g} s after {self.cancel_cmd}"
        )

    def output(self) -> str:
        parts = []
        if self.submit_output:
            parts += [f"--- {self.submit_cmd} ---", self.submit_output]
        for log in self.output_files()[:3]:
            parts += [f"--- {log.name} ---", tail(log)]
        return "\n".join(parts)

    def output_files(self) -> list[Path]:
        return sorted(self.log_dir.glob(f"{self.name}-{self.job_id}*.log")) if self.job_id else []

    def describe(self) -> str:
        return f"{self.name} job {self.job_id or '(not submitted)'} ({self.n} {self.role})"
