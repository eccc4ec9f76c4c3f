"""Quality gates: ruff, snakefmt, snakemake --lint and dry runs of both configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crossemotion.config import ensemble_members, load_config
from crossemotion.layout import config_seeds
from tests.conftest import ROOT, VENV_BIN, run_snakemake


def _tool(name: str) -> str:
    exe = VENV_BIN / name
    return str(exe) if exe.exists() else name


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_clean(command: list[str]) -> None:
    proc = subprocess.run(
        [_tool("ruff"), *command, "src", "tests", "workflow", "bench", "experiments"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakefmt_clean() -> None:
    proc = subprocess.run(
        [_tool("snakefmt"), "--check", "Snakefile", "workflow/rules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("configs", [[], ["config/demo.yaml"], ["config/meld_text.yaml"]])
def test_snakemake_lint_clean(configs: list[str], workdir: Path) -> None:
    args = ["--lint"] + (["--configfile", *configs] if configs else [])
    proc = run_snakemake(args, cwd=workdir, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out


def _job_counts(out: str) -> dict[str, int]:
    """Snakemake's "Job stats" table (rule -> job count) from a dry run's output."""
    assert "Job stats:" in out, out
    table = out.split("Job stats:", 1)[1].split("\ntotal", 1)[0]
    counts = {}
    for line in table.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].isdigit():
            counts[fields[0]] = int(fields[1])
    return counts


@pytest.mark.parametrize("configs", [[], ["config/demo.yaml"], ["config/meld_text.yaml"]])
def test_dry_run_builds_dag_offline(configs: list[str], workdir: Path) -> None:
    args = ["-n", "all", "--quiet", "rules"] + (["--configfile", *configs] if configs else [])
    proc = run_snakemake(args, cwd=workdir)
    jobs = _job_counts(proc.stdout + proc.stderr)
    cfg = load_config(ROOT / "config" / "config.yaml", *(ROOT / c for c in configs))
    downloads = {rule for rule in jobs if rule.startswith("download_")}
    # one text job per seed and ensemble member (config/meld_text.yaml: three
    # seeds, two members), and one ensemble job per seed
    assert jobs["all"] == 1 and jobs["meld_index"] == 1
    members = len(ensemble_members("text", cfg["models"]["text"]))
    assert jobs["train_text"] == len(config_seeds(cfg)) * max(members, 1)
    assert jobs.get("ensemble_text", 0) == (len(config_seeds(cfg)) if members else 0)
    if cfg["meld"].get("text_only"):
        # annotations only: the three csvs are fetched, no archive is touched
        assert downloads == {"download_meld_annotations"}
        assert jobs["download_meld_annotations"] == 3
        assert not {"unpack_meld", "decode_meld", "meld_faces"} & set(jobs)
    else:
        shards = sum(cfg["meld"]["shards"].values())
        assert jobs["decode_meld"] == jobs["meld_faces"] == shards
        if cfg["synth"].get("enabled"):
            assert jobs["synth_demo"] == 1 and not downloads
        else:
            assert {"download_meld", "download_ifeed"} <= downloads


def test_cli_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "crossemotion.cli", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "synth" in proc.stdout
