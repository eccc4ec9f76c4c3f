"""The test harness itself: a Snakemake run stopped by a test leaves no job behind."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_snakemake


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead, only not yet reaped by its new parent
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"


def test_a_timed_out_snakemake_run_takes_its_jobs_with_it(tmp_path: Path) -> None:
    pidfile = tmp_path / "job.pid"
    (tmp_path / "Snakefile").write_text(
        f"rule slow:\n    output: 'done.txt'\n    shell: 'echo $$ > {pidfile}; exec sleep 600'\n"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        run_snakemake(["--cores", "1", "done.txt"], cwd=tmp_path, timeout=30)
    # Snakemake starts the job within seconds; 30 s leave room on a loaded machine
    assert pidfile.exists(), "the job never started: nothing was checked"
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(pid), f"the job {pid} outlived its Snakemake run"
