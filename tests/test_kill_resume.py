"""SIGKILL a run mid-decode and mid-training, then resume it.

The whole process group is killed, as a crash or an OOM kill of the node would:
Snakemake and the job it runs die together. Then `--unlock` (the lock of a
killed run stays) and a rerun with `--rerun-incomplete` must finish the work,
and nothing half-written may have been taken as done.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from tests import demo_runs
from tests.conftest import VENV_BIN, run_snakemake, snakemake_cmd

pytestmark = pytest.mark.slow

SHARD = "results/shards/meld/clips/train/part-0000.parquet"
METRICS = "results/models/c3d/meld/metrics.json"


def start(wd: Path, args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    log = (wd / "killed-run.log").open("w")
    return subprocess.Popen(
        [*snakemake_cmd(), "--cores", "2", *demo_runs.DEMO, *args],
        cwd=wd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def kill_when(proc: subprocess.Popen[str], ready, timeout: float = 600) -> float:
    """SIGKILL the run's process group once `ready()` holds; return the seconds waited."""
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before the kill point")
        if time.monotonic() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("kill point not reached")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return time.monotonic() - t0


def grew(path: Path, min_bytes: int = 1):
    return lambda: path.exists() and path.stat().st_size >= min_bytes


def resume(wd: Path, targets: list[str]) -> None:
    run_snakemake(["--unlock", *targets, *demo_runs.DEMO], cwd=wd)
    run_snakemake(["--cores", "2", "--rerun-incomplete", *targets, *demo_runs.DEMO], cwd=wd)


def test_kill_during_decode_then_resume(tmp_path: Path, tmp_path_factory):
    local = demo_runs.local_demo(tmp_path_factory)
    wd = demo_runs.clone(local, tmp_path / "wf")
    decode = demo_runs.rule_of(wd, SHARD)
    log = wd / "logs/meld/decode_train_0000.log"
    log.unlink(missing_ok=True)
    proc = start(wd, ["--forcerun", decode, "--", SHARD])
    # The decode log gets its first lines when the job has started its clips.
    kill_when(proc, grew(log, 200))

    shard = wd / SHARD
    if shard.exists():  # only a complete file may carry the final name
        assert pl.read_parquet(shard).height == pl.read_parquet(local / SHARD).height

    # rerun what the killed run asked for, and the manifest built from it
    targets = [SHARD, "results/meld/manifest.parquet"]
    resume(wd, targets)
    cols = ["key", "split", "label", "timestamps"]
    assert pl.read_parquet(wd / SHARD, columns=cols).equals(
        pl.read_parquet(local / SHARD, columns=cols)
    )
    # wall-clock columns (decode_seconds) differ between any two runs
    volatile = ["file", "decode_seconds"]
    ours = pl.read_parquet(wd / targets[1]).drop(volatile, strict=False)
    theirs = pl.read_parquet(local / targets[1]).drop(volatile, strict=False)
    assert ours.equals(theirs)


def test_kill_during_training_then_resume(tmp_path: Path, tmp_path_factory):
    local = demo_runs.local_demo(tmp_path_factory)
    wd = demo_runs.clone(local, tmp_path / "wf")
    train = demo_runs.rule_of(wd, METRICS)
    out = wd / "results/models/c3d/meld"
    train_log = out / "train_log.csv"
    proc = start(wd, ["--forcerun", train, "--", METRICS])
    # Kill after at least one finished epoch (a header line plus one row in the
    # per-epoch log, or a checkpoint file), i.e. with a checkpoint to resume from.
    started = time.time()

    def epoch_done() -> bool:
        fresh = [p for p in out.rglob("*") if p.is_file() and p.stat().st_mtime > started]
        rows = train_log.read_text().count("\n") if train_log in fresh else 0
        return rows >= 2 or any(p.suffix == ".pt" for p in fresh)

    kill_when(proc, epoch_done)
    assert not (wd / METRICS).exists(), "metrics.json must only appear when training ends"

    resume(wd, [METRICS])
    ours, theirs = (json.loads((d / METRICS).read_text()) for d in (wd, local))
    assert ours["test"] == theirs["test"]
    assert ours["dev"] == theirs["dev"]
