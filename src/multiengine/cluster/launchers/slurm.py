"""``slurm``: engines as the tasks of one ``sbatch`` job, started with ``srun``."""

from __future__ import annotations

import subprocess

from .batch import BatchLauncher

__all__ = ["SlurmLauncher"]

TEMPLATE = """\
#!/bin/bash
#SBATCH --job-name=${job_name}
#SBATCH --ntasks=${n}
#SBATCH --output=${log_dir}/slurm-%j.log
${options}
srun ${engine_command}
"""


class SlurmLauncher(BatchLauncher):
    """``sbatch --parsable`` a job of ``n`` tasks; ``scancel`` stops it."""

    name = "slurm"
    submit_cmd = "sbatch"
    cancel_cmd = "scancel"
    directive = "#SBATCH"
    default_template = TEMPLATE
    install_hint = "install Slurm's client commands (Debian: slurm-client) on this host"
    options_doc = {
        **BatchLauncher.common_options,
        "queue": "partition (--partition)",
        "account": "account to charge (--account)",
        "time": "time limit (--time), e.g. 1:00:00",
    }

    def directives(self) -> list[str]:
        lines = []
        for opt, flag in (("queue", "--partition"), ("account", "--account"), ("time", "--time")):
            if self.options.get(opt):
                lines.append(f"#SBATCH {flag}={self.options[opt]}")
        return lines + super().directives()

    def submit_flags(self) -> list[str]:
        return ["--parsable"]

    def job_state(self) -> str | None:
        r = subprocess.run(
            ["squeue", "-h", "-j", str(self.job_id), "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=30,
            env=self.env,
        )
        if r.returncode == 0 and r.stdout.strip():
            return None
        r = subprocess.run(
            ["scontrol", "show", "job", "-o", str(self.job_id)],
            capture_output=True,
            text=True,
            timeout=30,
            env=self.env,
        )
        for word in r.stdout.split():
            if word.startswith("JobState="):
                return word.split("=", 1)[1]
        return "gone"
