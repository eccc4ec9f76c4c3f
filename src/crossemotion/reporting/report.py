"""results/report.html from inside the workflow: a nested ``snakemake --report`` call.

Snakemake builds its report in a separate invocation, so the ``report_html``
rule runs one on the same Snakefile and working directory. The nested call
gets the run's merged config written to a file (so command-line ``--config``
and every ``--configfile`` of the outer run are honoured), ``--nolock``
because the outer run holds the lock, and as targets the report's own inputs,
so the job that is writing report.html is not part of the nested DAG.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


def report_command(
    snakefile: str | Path,
    workdir: str | Path,
    configfile: str | Path,
    report_path: str | Path,
    targets: Sequence[str],
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        "--report",
        str(report_path),
        "--nolock",
        *targets,
    ]


def build_report(
    output: str | Path,
    snakefile: str | Path,
    config: Mapping[str, Any],
    targets: Sequence[str],
    workdir: str | Path = ".",
    timeout: float = 1800,
    log_path: str | Path | None = None,
) -> None:
    """Run the nested report call and move its html onto ``output`` atomically.

    Runs inside Snakemake's own process (a ``run:`` block), so it writes the
    nested call's output to ``log_path`` instead of reconfiguring logging.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".report.") as tmp:
        configfile = Path(tmp) / "config.used.yaml"
        configfile.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        # Snakemake picks the report format from the name, so the partial file
        # is a report.html in a temp folder beside the output, renamed at the end.
        html = Path(tmp) / "report.html"
        cmd = report_command(snakefile, workdir, configfile.resolve(), html.resolve(), targets)
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
        )
        if log_path is not None:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            Path(log_path).write_text(
                f"$ {' '.join(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}\n"
            )
        if proc.returncode != 0 or not html.exists() or html.stat().st_size == 0:
            raise RuntimeError(
                f"snakemake --report failed (exit {proc.returncode}); see the log. "
                f"Last output:\n{proc.stderr[-3000:]}"
            )
        os.replace(html, output)
