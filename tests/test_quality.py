"""Quality gates: ruff, snakefmt, snakemake --lint and dry runs of both configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, VENV_BIN, run_snakemake


def _tool(name: str) -> str:
    exe = VENV_BIN / name
    return str(exe) if exe.exists() else name


def test_ruff_clean() -> None:
    proc = subprocess.run(
        [_tool("ruff"), "check", "src", "tests", "workflow", "bench"],
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


@pytest.mark.parametrize("configs", [[], ["config/demo.yaml"], ["config/meld_text.yaml"]])
def test_dry_run_builds_dag_offline(configs: list[str], workdir: Path) -> None:
    args = ["-n", "all", "--quiet", "rules"] + (["--configfile", *configs] if configs else [])
    run_snakemake(args, cwd=workdir)


def test_cli_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "crossemotion.cli", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "synth" in proc.stdout
