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

from crossemotion.config import load_config
from crossemotion.models.registry import MODELS
from crossemotion.reporting.tables import MEASURED
from crossemotion.resources import RULES, Request, job_resources
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
    # No --max-threads: every job must fit the 2-CPU node as the rules ask.
    cmd = ["--profile", "profiles/slurm", *FAST_POLL, *args]
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


def workflow_rules(tmp_path: Path) -> set[str]:
    """Every rule some config defines (downloads exist only for remote sources)."""
    record = tmp_path / "record.yaml"  # IFEED from the Zenodo record's listing
    record.write_text("ifeed:\n  files: []\n")
    rules: set[str] = set()
    for extra in ([], demo_runs.DEMO, ["--configfile", "config/meld_text.yaml", str(record)]):
        out = run_snakemake(["--list-rules", *extra]).stdout
        rules |= {line.split()[0] for line in out.splitlines() if line.strip()}
    return rules


def test_profile_sizes_no_rule():
    """Rules size themselves (crossemotion.resources); a profile that hard-coded
    real-data sizes would make the demo unschedulable on a small node."""
    slurm = profile("slurm")
    assert "set-resources" not in slurm
    assert slurm["executor"] == "slurm"
    assert slurm["slurm-status-command"] == "squeue"
    assert "set-resources" not in profile("local")


def test_every_rule_has_a_sizing(tmp_path: Path):
    """A rule without an entry would fail at parse time; one entry per rule, none stale."""
    rules = workflow_rules(tmp_path) - {"all"}
    sized = {r for r in rules if r.startswith("train_")} | set(RULES)
    ensembles = {r for r in rules if r.startswith("ensemble_")}
    assert rules - ensembles <= sized
    assert set(RULES) - {"ensemble"} <= rules, "stale entries in crossemotion.resources.RULES"


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
    """`--set-resources train_text:gpu=1` (docs/cluster.md) reaches that rule only,
    and (the profile having no set-resources to replace) every size stays the rules'."""
    jobs = planned_resources(*demo_runs.DEMO, "--set-resources", "train_text:gpu=1", "--", "all")
    gpus = gpus_by_rule(jobs)
    assert gpus.pop("train_text") == {1}
    assert {rule: g for rule, g in gpus.items() if g != {0}} == {}
    assert_sized_by_the_rules(jobs, DEMO_CONFIG)


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


def test_gpus_key_asks_a_gpu_and_keeps_the_sizes(tmp_path: Path):
    """The config route (docs/cluster.md): one model's `gpus: 1` in an overlay file."""
    overlay = tmp_path / "gpu.yaml"
    overlay.write_text("models:\n  text:\n    gpus: 1\n")
    jobs = planned_resources("--configfile", "config/demo.yaml", str(overlay), "--", "all")
    gpus = gpus_by_rule(jobs)
    assert gpus.pop("train_text") == {1}
    assert {rule: g for rule, g in gpus.items() if g != {0}} == {}
    assert_sized_by_the_rules(jobs, DEMO_CONFIG)


# ------------------------------------------------------------------- sizes
DEMO_CONFIG = (ROOT / "config" / "config.yaml", ROOT / "config" / "demo.yaml")


def expected_request(rule: str, cfg: dict) -> Request:
    """What crossemotion.resources sizes a job of ``rule`` at under ``cfg`` (no ensemble)."""
    if rule.startswith("train_"):
        name = rule.removeprefix("train_")
        return job_resources(rule, cfg, model=MODELS[name].sizing, section=cfg["models"][name])
    return job_resources("ensemble" if rule.startswith("ensemble_") else rule, cfg)


def assert_sized_by_the_rules(jobs: list[tuple[str, dict[str, str]]], configs) -> None:
    cfg = load_config(*configs)
    for rule, res in jobs:
        if rule != "all":
            want = expected_request(rule, cfg)
            got = (int(res["mem_mb"]), int(res["runtime"]))
            assert got == (want.mem_mb, want.runtime), rule


def test_demo_fits_a_small_node_and_real_data_asks_cluster_sizes():
    """The demo asks demo-sized memory, so two of its jobs run side by side on the
    2-CPU, 16000 MB node; the real config asks the cluster sizes of the full data."""
    demo = planned_resources(*demo_runs.DEMO, "--", "all")
    assert_sized_by_the_rules(demo, DEMO_CONFIG)
    largest = max(int(res["mem_mb"]) for rule, res in demo if rule != "all")
    assert 2 * largest <= slurm_cluster.NODE_MEM_MB, largest

    real = planned_resources("--", "all")
    assert_sized_by_the_rules(real, (ROOT / "config" / "config.yaml",))
    for rule, res in real:
        if rule.startswith("train_"):
            full = MODELS[rule.removeprefix("train_")].sizing.full
            assert (int(res["mem_mb"]), int(res["runtime"])) == (full.mem_mb, full.runtime)
    # train_fusion needs more than the small node: the real data is not for it
    assert max(int(res["mem_mb"]) for _, res in real) > slurm_cluster.NODE_MEM_MB


# ------------------------------------------------------------ the whole demo
# Rules the workflow runs on the submit host (`all` collects, report_html is a
# declared localrule: its nested `snakemake --report` needs the run's metadata).
LOCAL_RULES = {"all", "report_html"}
README_COMMAND = re.compile(r"^snakemake (--profile profiles/slurm .*?)\s+# demo$", re.M)


def readme_slurm_demo() -> list[str]:
    """The arguments of README's SLURM demo command, as a new user copies it."""
    found = README_COMMAND.findall((ROOT / "README.md").read_text())
    assert len(found) == 1, "README has no single `snakemake --profile profiles/slurm ... # demo`"
    return found[0].split()


def test_readme_command_is_the_demo_through_the_profile():
    args = readme_slurm_demo()
    assert args[:2] == ["--profile", "profiles/slurm"]
    assert args[-2:] == ["--configfile", "config/demo.yaml"] and "all" in args


@pytest.mark.slurm
@pytest.mark.slow
def test_demo_all_on_slurm(cluster, tmp_path: Path):
    """README's SLURM demo command as written (every epoch of config/demo.yaml), on
    a CPU-only SLURM whose one node has 2 CPUs and 16000 MB: every job completes."""
    wd = demo_runs.copy_sources(tmp_path / "wf")
    readme = readme_slurm_demo()[2:]  # run_on_slurm adds the profile (and faster polls)
    planned = Counter(rule for rule, _ in planned_resources(*readme, cwd=wd))
    started = time.monotonic()
    log = run_on_slurm(cluster, wd, readme, timeout=5400)
    print(f"demo `all` on SLURM: {time.monotonic() - started:.0f} s")

    submitted = assert_all_through_sbatch(cluster, wd, log)
    ran = Counter(name for local, name in RULE_HEADING.findall(log) if not local)
    local = {name for local, name in RULE_HEADING.findall(log) if local}
    assert local == LOCAL_RULES
    assert ran + Counter(LOCAL_RULES) == planned  # every job of `all`, each once
    cfg = load_config(*DEMO_CONFIG)
    for slurm_id in submitted.values():
        record = job_record(cluster, slurm_id)
        assert "gpu" not in record.get("TRES", "") + record.get("TresPerJob", ""), record
        # the plugin's comment: rule_{rule}[_wildcards_{...}]
        rule = record["Comment"].removeprefix("rule_").split("_wildcards_")[0]
        assert record["MinMemoryNode"] == f"{expected_request(rule, cfg).mem_mb}M", record
        assert int(record["NumCPUs"]) <= slurm_cluster.NODE_CPUS, record
    # The demo's sizes are honest: each training and transfer job's peak RSS
    # (Snakemake's benchmark file) stays under what the job asked.
    peaks = {}
    # train_{model}_{dataset}[_member{i}].tsv or transfer_{cell}.tsv; longest
    # rule first, since one model's name may begin another's
    job_rules = sorted([f"train_{m}" for m in MODELS] + ["transfer"], key=len, reverse=True)
    for tsv in (wd / "logs" / "benchmarks").rglob("*.tsv"):
        rule = next(r for r in job_rules if tsv.name.startswith(f"{r}_"))
        peaks[str(tsv)] = (rule, pl.read_csv(tsv, separator="\t")["max_rss"][0])
    assert len(peaks) == planned["transfer"] + sum(
        n for rule, n in planned.items() if rule.startswith("train_")
    )
    for name, (rule, peak) in peaks.items():
        assert peak < expected_request(rule, cfg).mem_mb, (name, peak)

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
