"""The SLURM profile on a real single-node SLURM (tests/slurm_cluster.py).

The cluster starts once per session; a missing slurm-wlm/munge is a failure
with the install hint, never a skip.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import yaml

from crossemotion.reporting.tables import MEASURED
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


def run_on_slurm(cluster: slurm_cluster.Cluster, wd: Path, args: list[str], timeout: int = 1800):
    # --max-threads: rules asking more cores than this small node has still fit.
    cmd = ["--profile", "profiles/slurm", *FAST_POLL, "--max-threads", str(cluster.cpus), *args]
    env = {**cluster.env, "PATH": f"{VENV_BIN}:{cluster.env['PATH']}"}
    proc = subprocess.run(
        [*snakemake_cmd(), *cmd], cwd=wd, env=env, capture_output=True, text=True, timeout=timeout
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


# ---------------------------------------------------------------- GPU requests
# What each job would ask the executor for, read from a dry run through the
# profile: Snakemake prints every job's rule and resources.
JOB_HEADING = re.compile(r"^(?:local)?rule (\w+):$")
TRAINING = re.compile(r"^(train_\w+|transfer)$")


def planned_resources(*args: str, cwd: Path = ROOT) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) for every job of a dry run through profiles/slurm."""
    proc = run_snakemake(["-n", "--profile", "profiles/slurm", *args], cwd=cwd)
    jobs: list[tuple[str, dict[str, str]]] = []
    rule = None
    for line in (proc.stdout + proc.stderr).splitlines():
        heading = JOB_HEADING.match(line)
        if heading:
            rule = heading.group(1)
        elif rule and line.strip().startswith("resources: "):
            fields = line.strip().removeprefix("resources: ").split(", ")
            jobs.append((rule, dict(f.split("=", 1) for f in fields)))
            rule = None
    assert jobs, proc.stdout[-3000:] + proc.stderr[-3000:]
    return jobs


def gpus_by_rule(jobs: list[tuple[str, dict[str, str]]]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for rule, res in jobs:
        out.setdefault(rule, set()).add(int(res.get("gpu", 0)))
    return out


def test_demo_asks_no_gpu():
    """README's demo command on a CPU-only cluster: no job may reach sbatch with --gpus."""
    jobs = planned_resources(*demo_runs.DEMO, "--", "all")
    gpus = gpus_by_rule(jobs)
    # the models config/demo.yaml trains and the transfer cells, each asking 0 explicitly
    assert {"train_text", "train_fusion", "train_c3d", "transfer"} <= set(gpus)
    assert all("gpu" in res for rule, res in jobs if TRAINING.match(rule))
    assert {rule: g for rule, g in gpus.items() if g != {0}} == {}


def test_real_config_asks_what_it_sets(tmp_path: Path):
    """config/config.yaml asks one GPU per training job; `device: cpu` overrides it."""
    real = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    gpus = gpus_by_rule(planned_resources("--", "all"))
    for rule, asked in gpus.items():
        if rule == "transfer":
            assert asked == {real["models"][real["transfer"]["model"]]["gpus"]}
        elif rule.startswith("train_"):
            assert asked == {real["models"][rule.removeprefix("train_")]["gpus"]}, rule
        else:
            assert asked == {0}, rule
    assert any(1 in asked for asked in gpus.values())  # the real config does ask

    cpu = tmp_path / "cpu.yaml"
    cpu.write_text("device: cpu\n")
    on_cpu = gpus_by_rule(
        planned_resources("--configfile", "config/config.yaml", str(cpu), "--", "all")
    )
    assert set(on_cpu) == set(gpus)
    assert {rule: g for rule, g in on_cpu.items() if g != {0}} == {}


def test_set_resources_asks_a_gpu():
    """`--set-resources train_text:gpu=1` (docs/cluster.md) reaches that rule only."""
    jobs = planned_resources(*demo_runs.DEMO, "--set-resources", "train_text:gpu=1", "--", "all")
    gpus = gpus_by_rule(jobs)
    assert gpus.pop("train_text") == {1}
    assert {rule: g for rule, g in gpus.items() if g != {0}} == {}
    # Documented caveat: a command-line --set-resources replaces the profile's
    # whole set-resources block, so decode_meld is back to its rule's own size.
    sized = profile("slurm")["set-resources"]["decode_meld"]["mem_mb"]
    assert {res["mem_mb"] for rule, res in jobs if rule == "decode_meld"} != {str(sized)}


def test_default_resources_on_the_command_line_replace_the_profiles():
    """Why README's site-settings command repeats mem_mb and runtime."""
    ours = profile("slurm")["default-resources"]
    bare = ["--default-resources", "slurm_account=ACC"]
    kept = [*bare, *(f"{k}={v}" for k, v in ours.items())]
    for extra, expect in ((bare, "<TBD>"), (kept, str(ours["mem_mb"]))):
        jobs = planned_resources(*demo_runs.DEMO, *extra, "--", "all")
        (collect,) = [res for rule, res in jobs if rule == "all"]
        assert collect["slurm_account"] == "ACC"
        assert collect["mem_mb"] == expect


def test_gpus_key_asks_a_gpu_and_keeps_profile_sizes(tmp_path: Path):
    """The config route (docs/cluster.md): one model's `gpus: 1` in an overlay file."""
    overlay = tmp_path / "gpu.yaml"
    overlay.write_text("models:\n  text:\n    gpus: 1\n")
    jobs = planned_resources("--configfile", "config/demo.yaml", str(overlay), "--", "all")
    gpus = gpus_by_rule(jobs)
    assert gpus.pop("train_text") == {1}
    assert {rule: g for rule, g in gpus.items() if g != {0}} == {}
    sizes = profile("slurm")["set-resources"]
    for rule, res in jobs:
        if rule in sizes:
            assert res["mem_mb"] == str(sizes[rule]["mem_mb"]), rule


# ------------------------------------------------------------ the whole demo
# One epoch per model keeps the run within CI time; the generated data stay as
# config/demo.yaml makes them (fewer utterances change what the transfer
# cells have left after the MELD/IFEED overlap is excluded), and every rule and
# target of `all` stays.
ONE_EPOCH = {
    "models": {
        name: {"epochs": 1, "patience": 1}
        for name in ("cnn_lstm", "c3d", "resnet50", "text", "fusion")
    },
    "transfer": {"epochs": 1},
}
# Rules the workflow runs on the submit host (`all` collects, report_html is a
# declared localrule: its nested `snakemake --report` needs the run's metadata).
LOCAL_RULES = {"all", "report_html"}


@pytest.mark.slurm
@pytest.mark.slow
def test_demo_all_on_slurm(cluster, tmp_path: Path):
    """README's cluster command for the demo, on a CPU-only SLURM, end to end."""
    wd = demo_runs.copy_sources(tmp_path / "wf")
    (wd / "one_epoch.yaml").write_text(yaml.safe_dump(ONE_EPOCH))
    readme = ["all", "--configfile", "config/demo.yaml", "one_epoch.yaml"]
    planned = Counter(rule for rule, _ in planned_resources(*readme, cwd=wd))
    started = time.monotonic()
    log = run_on_slurm(cluster, wd, readme, timeout=3600)
    print(f"demo `all` on SLURM: {time.monotonic() - started:.0f} s")

    submitted = assert_all_through_sbatch(cluster, wd, log)
    ran = Counter(name for local, name in RULE_HEADING.findall(log) if not local)
    local = {name for local, name in RULE_HEADING.findall(log) if local}
    assert local == LOCAL_RULES
    assert ran + Counter(LOCAL_RULES) == planned  # every job of `all`, each once
    for slurm_id in submitted.values():
        record = job_record(cluster, slurm_id)
        assert "gpu" not in record.get("TRES", "") + record.get("TresPerJob", ""), record

    report = (wd / "results" / "report.html").read_text()
    assert "<html" in report[:1000].lower(), report[:1000]
    benchmark = pl.read_csv(wd / "results" / "tables" / "benchmark.csv")
    measured = benchmark.filter(pl.col("source") == MEASURED)
    runs = {
        (p.parent.parent.name, p.parent.name) for p in wd.glob("results/models/*/*/metrics.json")
    }
    assert len(runs) == sum(n for rule, n in planned.items() if rule.startswith("train_"))
    assert set(measured.select("model", "dataset").iter_rows()) == runs
    assert set(measured["data"]) == {"demo (generated)"}
    for table in ("character_wise.csv", "transfer.csv"):
        assert pl.read_csv(wd / "results" / "tables" / table).height > 0, table
    # The cluster left outputs and metadata a local run accepts as finished.
    after = run_snakemake(["-n", *readme], cwd=wd)
    assert "Nothing to be done" in after.stdout + after.stderr, after.stdout[-3000:]
