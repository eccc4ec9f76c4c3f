from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from subprocess import PIPE

import pytest

from crossemotion.ingest.meld.csvs import local_csv_dir

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# headless Chromium (Debian `chromium`) for the report and web-demo tests
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_configure(config: pytest.Config) -> None:
    # `timeout` and batch systems stop a run with SIGTERM, which ends Python at
    # once; as an exception it lets run_snakemake kill the jobs it started
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(f"pytest stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)


def kill_group(child: subprocess.Popen[str]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    child.communicate()


def snakemake_cmd() -> list[str]:
    exe = VENV_BIN / "snakemake"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]


def run_snakemake(
    args: list[str], cwd: Path = ROOT, check: bool = True, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run Snakemake in its own process group, and kill the whole group when the
    test is interrupted or times out: its jobs (training runs, a local HTTP
    server) would otherwise outlive the test and hold the cores."""
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    cmd = [*snakemake_cmd(), *args]
    with subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=PIPE, stderr=PIPE, text=True, start_new_session=True
    ) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except BaseException:
            kill_group(child)
            raise
    proc = subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {args} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def meld_csvs() -> Path:
    """A folder with the official MELD csvs: $CROSSEMOTION_MELD_CSV_DIR, else a
    verified download into ~/.cache/crossemotion, else the test is skipped."""
    # short timeout: where the network is closed the skip should come at once
    try:
        folder, reason = local_csv_dir(timeout=10.0)
    except FileNotFoundError as err:  # the variable names a folder without the csvs
        pytest.fail(str(err))
    if folder is None:
        pytest.skip(reason)
    return folder


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the workflow sources in a temp folder, to run Snakemake in."""
    dest = tmp_path / "wf"
    dest.mkdir()
    for name in ("Snakefile", "workflow", "config", "src", "profiles", "envs"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest
