"""One completed local demo run per test session, shared by the scale-out tests.

The rerun and kill/resume tests compare against (or start from) the same
finished run; it is built once, on first use, and each test works on a
copy (`clone`) so none of them disturbs the others.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import ROOT, run_snakemake

SOURCES = ("Snakefile", "workflow", "config", "src", "profiles", "envs")
DEMO = ["--configfile", "config/demo.yaml"]
# What the rerun and kill/resume tests need finished: ingestion of both datasets
# and the deterministic c3d model. `all` would add every model and the report
# (tests/test_slurm.py runs `all`, shrunk, on SLURM).
TARGETS = [
    "results/meld/manifest.parquet",
    "results/ifeed/manifest.parquet",
    "results/models/c3d/meld/metrics.json",
]

_cache: dict[str, Path] = {}


@dataclass(frozen=True)
class Plan:
    """What a dry run would redo: output path -> rule, for outputs with an update pending."""

    pending: dict[str, str]

    def rules(self) -> set[str]:
        return set(self.pending.values())

    def under(self, prefix: str) -> set[str]:
        return {path for path in self.pending if path.startswith(prefix)}


def copy_sources(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def clone(src: Path, dest: Path) -> Path:
    """Copy a run folder keeping mtimes and .snakemake metadata, so nothing looks changed."""
    shutil.copytree(src, dest, symlinks=True, copy_function=shutil.copy2)
    return dest


def local_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The finished local demo run (built on first call in the session)."""
    if "local" not in _cache:
        wd = copy_sources(tmp_path_factory.mktemp("demo-local") / "wf")
        run_snakemake(
            ["--profile", "profiles/local", "--cores", "2", *DEMO, "--", *TARGETS], cwd=wd
        )
        _cache["local"] = wd
    return _cache["local"]


def plan(wd: Path, *args: str, targets: list[str] = TARGETS, configs: tuple[str, ...] = ()) -> Plan:
    """Dry run with `--summary`: which outputs Snakemake would regenerate, and by which rule.

    `--` keeps options with several values (`--configfile`, `--forcerun`) from
    swallowing the targets; extra config files go into the same `--configfile`
    (a second `--configfile` would replace the first).
    """
    proc = run_snakemake(
        ["-n", "--summary", "--cores", "1", *DEMO, *configs, *args, "--", *targets], cwd=wd
    )
    pending = {}
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("output_file\t"))
    cols = lines[header].split("\t")
    for line in lines[header + 1 :]:
        row = dict(zip(cols, line.split("\t"), strict=False))
        if row.get("plan", "").startswith("update pending"):
            pending[row["output_file"]] = row["rule"]
    return Plan(pending)


def rule_of(wd: Path, output: str) -> str:
    """The rule that writes `output` in this workflow (read from the summary)."""
    proc = run_snakemake(["-n", "--summary", "--cores", "1", *DEMO, "--", output], cwd=wd)
    for line in proc.stdout.splitlines():
        fields = line.split("\t")
        if fields[0] == output:
            return fields[2]
    raise AssertionError(f"no rule writes {output}")


def shard_rows(wd: Path, pattern: str) -> dict[str, int]:
    return {
        str(p.relative_to(wd)): pl.scan_parquet(p).select(pl.len()).collect().item()
        for p in sorted(wd.glob(pattern))
    }
