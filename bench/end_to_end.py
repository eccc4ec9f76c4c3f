"""End to end: wall time of the demo workflow on 2 cores, with a per-rule breakdown.

Runs ``snakemake --cores 2 all --configfile config/demo.yaml`` in a fresh copy
of the workflow (so nothing cached in the checkout is reused) and reads the
per-job times from Snakemake's ``benchmark:`` files (TSV, column ``s``) where
rules declare them, and from the job start/finish lines of the run log for
every rule. A failing run is recorded with its error and the log tail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, write_result

TARGET_S = 600.0
RESULTS_TABLES = ROOT / "results" / "bench" / "end_to_end_tables"
_STAMP = re.compile(r"^\[(\w{3} \w{3}\s+\d+ [\d:]+ \d{4})\]")


def _copy_workflow(dest: Path) -> None:
    for name in ("Snakefile", "workflow", "config", "src", "profiles", "envs"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            shutil.copy2(src, dest / name)


def _benchmark_files(wf: Path) -> dict[str, float]:
    """Seconds per rule (summed over its jobs) from benchmark TSVs under benchmarks/."""
    out: dict[str, float] = defaultdict(float)
    for tsv in wf.glob("benchmarks/**/*.tsv"):
        lines = tsv.read_text().splitlines()
        if len(lines) >= 2:
            head, row = lines[0].split("\t"), lines[1].split("\t")
            rel = tsv.relative_to(wf / "benchmarks")
            out[str(rel.parts[0])] += float(row[head.index("s")])
    return dict(out)


def _log_rule_times(log: str) -> dict[str, float]:
    """Seconds per rule from the log: each job runs from 'rule X:' to 'Finished jobid: N'."""
    starts: dict[str, tuple[str, datetime]] = {}
    out: dict[str, float] = defaultdict(float)
    stamp: datetime | None = None
    rule: str | None = None
    for line in log.splitlines():
        m = _STAMP.match(line)
        if m:
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            continue
        m = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):", line)
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"^\s+jobid: (\d+)", line)
        if m and rule and stamp:
            starts[m.group(1)] = (rule, stamp)
            rule = None
            continue
        m = re.match(
            r"^Finished job(?:id)? (\d+)",
            line.replace("jobid:", "jobid").replace("Finished jobid ", "Finished job "),
        )
        if m and stamp and m.group(1) in starts:
            name, t0 = starts.pop(m.group(1))
            out[name] += (stamp - t0).total_seconds()
    return dict(out)


def run(timeout: float = 1800.0) -> dict[str, Any]:
    snakemake = str(Path(sys.executable).parent / "snakemake")
    with tempfile.TemporaryDirectory() as tmp:
        wf = Path(tmp)
        _copy_workflow(wf)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [snakemake, "--cores", "2", "all", "--configfile", "config/demo.yaml"],
                cwd=wf, capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
            code, log = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as err:
            code, log = -1, f"timed out after {timeout:g}s\n{err.stdout or ''}{err.stderr or ''}"
        wall = time.perf_counter() - t0
        bench_files = _benchmark_files(wf)
        # the tables this run produced, beside its timing (README's demo figures come from them)
        tables = RESULTS_TABLES
        shutil.rmtree(tables, ignore_errors=True)
        if (wf / "results" / "tables").is_dir():
            shutil.copytree(wf / "results" / "tables", tables)
    per_rule = _log_rule_times(log)
    result: dict[str, Any] = {
        "command": "snakemake --cores 2 all --configfile config/demo.yaml (fresh copy)",
        "returncode": code,
        "wall_seconds": wall,
        "rule_seconds_from_log": dict(sorted(per_rule.items(), key=lambda kv: -kv[1])),
        "rule_seconds_from_benchmark_files": bench_files,
        "tables": str(RESULTS_TABLES.relative_to(ROOT)),
        "checks": [{"target": f"make demo <= {TARGET_S:g} s on 2 cores", "measured": wall,
                    "met": code == 0 and wall <= TARGET_S}],
    }  # fmt: skip
    if code != 0:
        result["error"] = log[-3000:]
    write_result("end_to_end", result)
    return result
