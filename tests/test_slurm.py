"""The SLURM profile on a real single-node SLURM (tests/slurm_cluster.py).

The cluster starts once per session; a missing slurm-wlm/munge is a failure
with the install hint, never a skip.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests import demo_runs, slurm_cluster
from tests.conftest import ROOT, VENV_BIN, run_snakemake, snakemake_cmd

SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
RULE_HEADING = re.compile(r"^(local)?rule (\w+):$", re.M)
# Faster first poll than the profile's cluster default (40 s); the jobs here are short.
FAST_POLL = ["--slurm-init-seconds-before-status-checks", "3", "--slurm-keep-successful-logs"]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    try:
        handle = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    except slurm_cluster.ClusterError as exc:
        pytest.fail(str(exc))
    yield handle
    slurm_cluster.stop(handle)


def run_on_slurm(cluster: slurm_cluster.Cluster, wd: Path, args: list[str]):
    # --max-threads: rules asking more cores than this small node has still fit.
    cmd = ["--profile", "profiles/slurm", *FAST_POLL, "--max-threads", str(cluster.cpus), *args]
    env = {**cluster.env, "PATH": f"{VENV_BIN}:{cluster.env['PATH']}"}
    proc = subprocess.run(
        [*snakemake_cmd(), *cmd], cwd=wd, env=env, capture_output=True, text=True, timeout=1800
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    return log


def job_record(cluster: slurm_cluster.Cluster, slurm_id: str) -> dict[str, str]:
    out = cluster.run("scontrol", "show", "job", "--oneliner", slurm_id).stdout
    return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)


def assert_all_through_sbatch(cluster: slurm_cluster.Cluster, wd: Path, log: str) -> dict:
    """Every non-local job got a SLURM id, SLURM ran it to COMPLETED, its log is kept."""
    submitted = dict(SUBMITTED.findall(log))
    remote = [name for local, name in RULE_HEADING.findall(log) if not local]
    assert remote, log[-3000:]
    assert len(submitted) == len(remote), (remote, submitted)
    known = set(cluster.job_ids())
    for slurm_id in submitted.values():
        assert slurm_id in known
        record = job_record(cluster, slurm_id)
        assert record["JobState"] == "COMPLETED", record
        assert record["WorkDir"] == str(wd)
        logs = list((wd / ".snakemake" / "slurm_logs").rglob(f"{slurm_id}.log"))
        assert len(logs) == 1, slurm_id
    return submitted


def profile(name: str) -> dict:
    return yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())


def test_profiles_name_existing_rules():
    """A typo in set-resources is silently ignored by Snakemake; catch it here."""
    rules: set[str] = set()
    for extra in ([], demo_runs.DEMO):
        out = run_snakemake(["--list-rules", *extra]).stdout
        rules |= {line.split()[0] for line in out.splitlines() if line.strip()}
    named = set(profile("slurm")["set-resources"])
    assert named <= rules, f"profile names unknown rules: {sorted(named - rules)}"
    assert profile("slurm")["executor"] == "slurm"
    assert profile("slurm")["slurm-status-command"] == "squeue"


TINY = """
rule all:
    input: "b.txt"

rule a:
    output: "a.txt"
    threads: 1
    resources: mem_mb=300, runtime=5
    shell: "echo $SLURM_JOB_ID > {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    threads: 2
    resources: mem_mb=400, runtime=5
    shell: "cat {input} > {output}; echo $SLURM_JOB_ID $SLURM_CPUS_PER_TASK >> {output}"
"""


@pytest.mark.slurm
@pytest.mark.slow
def test_profile_submits_rules_as_slurm_jobs(cluster, tmp_path: Path):
    """The profile's mechanics alone: sbatch per job, threads -> CPUs, mem/runtime passed."""
    wd = demo_runs.copy_sources(tmp_path / "wf")
    (wd / "Snakefile").write_text(TINY)
    log = run_on_slurm(cluster, wd, ["--set-resources", "b:mem_mb=500"])
    submitted = assert_all_through_sbatch(cluster, wd, log)
    assert len(submitted) == 2
    a_id, b_line = (wd / "b.txt").read_text().splitlines()
    b_id, b_cpus = b_line.split()
    assert {a_id, b_id} == set(submitted.values())
    assert b_cpus == "2"
    record = job_record(cluster, b_id)
    assert record["NumCPUs"] == "2"
    assert record["MinMemoryNode"] == "500M"  # --set-resources beats the rule's 400
    assert record["TimeLimit"] == "00:05:00"


def frame(path: Path, cols: list[str]) -> pl.DataFrame:
    df = pl.read_parquet(path)
    keep = [c for c in cols if c in df.columns]
    return df.select(keep).sort(keep)


@pytest.mark.slurm
@pytest.mark.slow
def test_demo_on_slurm_matches_local_run(cluster, tmp_path: Path, tmp_path_factory):
    local = demo_runs.local_demo(tmp_path_factory)
    wd = demo_runs.copy_sources(tmp_path / "wf")
    log = run_on_slurm(cluster, wd, [*demo_runs.TARGETS, *demo_runs.DEMO])
    submitted = assert_all_through_sbatch(cluster, wd, log)
    assert len(submitted) >= 5

    for manifest in ("results/meld/manifest.parquet", "results/ifeed/manifest.parquet"):
        cols = ["split", "dialogue_id", "utterance_id", "member", "label", "status", "reason"]
        assert frame(wd / manifest, cols).equals(frame(local / manifest, cols)), manifest
    for pattern in ("results/shards/meld/*/*/*.parquet", "results/shards/ifeed/*/*/*.parquet"):
        rows = demo_runs.shard_rows(wd, pattern)
        assert rows, pattern
        assert rows == demo_runs.shard_rows(local, pattern)
    metrics = "results/models/c3d/meld/metrics.json"
    ours, theirs = (json.loads((d / metrics).read_text()) for d in (wd, local))
    assert ours["test"] == theirs["test"]
    assert ours["dev"] == theirs["dev"]
