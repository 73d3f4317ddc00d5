"""``sge``: engines as the tasks of one Grid Engine array job (``qsub -t 1-N``)."""

from __future__ import annotations

import subprocess

from .batch import BatchLauncher

__all__ = ["SGELauncher"]

TEMPLATE = """\
#!/bin/bash
#$$ -N ${job_name}
#$$ -S /bin/bash
#$$ -t 1-${n}
#$$ -j y
#$$ -o ${log_dir}/sge-$$JOB_ID.$$TASK_ID.log
#$$ -wd ${log_dir}
${options}
exec ${engine_command}
"""


class SGELauncher(BatchLauncher):
    """``qsub -terse`` an array job of ``n`` tasks, one engine each; ``qdel`` stops it.

    Jobs get the submitter's environment (``-V``), but Grid Engine resets ``PATH`` in
    them, so the engines' Python is an absolute path (this interpreter unless
    ``python`` says otherwise).
    """

    name = "sge"
    submit_cmd = "qsub"
    cancel_cmd = "qdel"
    directive = "#$"
    default_template = TEMPLATE
    install_hint = (
        "install Grid Engine's client commands (Debian: gridengine-client) and set SGE_ROOT"
    )
    options_doc = {
        **BatchLauncher.common_options,
        "queue": "queue (-q)",
        "time": "hard run-time limit (-l h_rt=...), e.g. 1:00:00",
        "pe": "parallel environment and slots (-pe), e.g. 'smp 1'",
    }

    def directives(self) -> list[str]:
        lines = []
        if self.options.get("queue"):
            lines.append(f"#$ -q {self.options['queue']}")
        if self.options.get("time"):
            lines.append(f"#$ -l h_rt={self.options['time']}")
        if self.options.get("pe"):
            lines.append(f"#$ -pe {self.options['pe']}")
        return lines + super().directives()

    def submit_flags(self) -> list[str]:
        return ["-terse", "-V"]  # the submitter's environment, as Slurm jobs get it

    def job_state(self) -> str | None:
        r = subprocess.run(
            ["qstat", "-j", str(self.job_id)],
            capture_output=True,
            text=True,
            timeout=30,
            env=self.env,
        )
        return None if r.returncode == 0 else "finished"
