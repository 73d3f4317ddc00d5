"""``pbs``: engines as the sub-jobs of one PBS job array (OpenPBS/PBS Pro ``-J``, Torque ``-t``)."""

from __future__ import annotations

import subprocess

from .batch import BatchLauncher

__all__ = ["PBSLauncher"]

TEMPLATE = """\
#!/bin/bash
#PBS -N ${job_name}
#PBS -j oe
#PBS -o ${log_dir}/
${options}
cd "$${PBS_O_WORKDIR:-${log_dir}}"
exec ${engine_command}
"""


class PBSLauncher(BatchLauncher):
    """``qsub`` a job array of ``n`` sub-jobs, one engine each; ``qdel`` stops it.

    The job id is what ``qsub`` prints (``123[].server`` for an array), kept whole for
    ``qdel``. ``array = "torque"`` writes Torque's ``-t 1-N`` instead of PBS Pro's
    ``-J 1-N``.
    """

    name = "pbs"
    submit_cmd = "qsub"
    cancel_cmd = "qdel"
    directive = "#PBS"
    default_template = TEMPLATE
    job_id_pattern = r"\d+(\[\d*\])?(\.[\w.-]+)?"
    install_hint = "install the PBS client commands (OpenPBS, PBS Pro or Torque) on this host"
    options_doc = {
        **BatchLauncher.common_options,
        "queue": "queue (-q)",
        "time": "walltime (-l walltime=...), e.g. 1:00:00",
        "array": "job-array flavour: 'pbspro' (-J, default) or 'torque' (-t)",
    }

    def directives(self) -> list[str]:
        lines = []
        if self.n > 1:
            flavour = str(self.options.get("array", "pbspro")).lower()
            if flavour not in ("pbspro", "torque"):
                raise ValueError(
                    f"pbs launcher: array must be 'pbspro' or 'torque', not {flavour!r}"
                )
            lines.append(f"#PBS {'-t' if flavour == 'torque' else '-J'} 1-{self.n}")
        if self.options.get("queue"):
            lines.append(f"#PBS -q {self.options['queue']}")
        if self.options.get("time"):
            lines.append(f"#PBS -l walltime={self.options['time']}")
        return lines + super().directives()

    def submit_flags(self) -> list[str]:
        return ["-V"]  # the submitter's environment, as Slurm jobs get it

    def job_state(self) -> str | None:
        r = subprocess.run(
            ["qstat", str(self.job_id)], capture_output=True, text=True, timeout=30, env=self.env
        )
        return None if r.returncode == 0 else "finished"

    def output_files(self) -> list:  # type: ignore[type-arg]
        if not self.job_id:
            return []
        number = self.job_id.split("[")[0].split(".")[0]
        return sorted(p for p in self.log_dir.iterdir() if number in p.name and p.suffix != ".sh")
