"""Progress lines inside an epoch (issue 37, item 9): a job under Snakemake has no
terminal for tqdm's bars, so the fit loop logs ``epoch E/N step S/T loss L elapsed X
eta Y`` at most ``progress_seconds`` apart and at each epoch's last step."""

from __future__ import annotations

import csv
import itertools
import logging
import re
from pathlib import Path

import pytest

from crossemotion.config import property_default
from crossemotion.training.loop import EpochProgress, clock_text
from crossemotion.training.settings import JobSettings
from tests import demo_runs
from tests.conftest import run_snakemake

LINE = re.compile(r"epoch (\d+)/(\d+) step (\d+)/(\d+) loss (\d+\.\d{4}) elapsed (\S+) eta (\S+)$")
METRICS = "results/models/c3d/meld/metrics.json"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def progress_lines(text: str) -> list[tuple[int, ...]]:
    """(epoch, epochs, step, steps) of every progress line in a log's text."""
    return [
        tuple(int(g) for g in m.groups()[:4])
        for line in text.splitlines()
        if (m := LINE.search(line))
    ]


def test_a_line_when_the_interval_has_passed_and_at_the_last_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    progress = EpochProgress(2, 3, steps=10, every=5.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="crossemotion.training.loop"):
        for step in range(1, 11):
            clock.now += 2.0  # a step of 2 s: a line every third step (6 s >= 5 s)
            progress.step(step, loss=1.0 / step)
    lines = [r.getMessage() for r in caplog.records]
    assert [tuple(map(int, LINE.search(x).groups()[:4])) for x in lines] == [  # type: ignore[union-attr]
        (2, 3, 3, 10), (2, 3, 6, 10), (2, 3, 9, 10), (2, 3, 10, 10),
    ]  # fmt: skip
    # step 3: 6 s for 3 steps, 7 steps left at 2 s each
    assert lines[0].endswith("loss 0.3333 elapsed 6s eta 14s")
    assert lines[-1].endswith("elapsed 20s eta 0s")
    assert progress.lines == 4


def test_no_gap_longer_than_the_interval_between_steps_shorter_than_it() -> None:
    """Whatever the step times, consecutive lines are at most ``every`` plus one step
    apart, and a step that alone outlasts ``every`` gets its own line."""
    clock = Clock()
    progress = EpochProgress(1, 1, steps=8, every=3.0, clock=clock)
    stamps = []
    for step, seconds in enumerate([0.5, 0.5, 4.0, 0.1, 0.1, 1.0, 2.5, 0.2], start=1):
        clock.now += seconds
        before = progress.lines
        progress.step(step, loss=0.5)
        if progress.lines > before:
            stamps.append((step, clock.now))
    assert [s for s, _ in stamps] == [3, 7, 8]
    assert all(b - a <= 3.0 + 2.5 for (_, a), (_, b) in itertools.pairwise(stamps))


def test_clock_text() -> None:
    assert [clock_text(s) for s in (0, 4.6, 75.4, 3725)] == ["0s", "5s", "1m15s", "1h02m05s"]


def test_the_default_interval_is_at_most_30_seconds_and_must_be_positive() -> None:
    assert 0 < property_default("progress_seconds") <= 30
    assert JobSettings().progress_seconds == property_default("progress_seconds")
    with pytest.raises(ValueError, match="progress_seconds"):
        JobSettings(progress_seconds=0)
    with pytest.raises(ValueError, match="progress interval"):
        EpochProgress(1, 1, steps=1, every=0)


@pytest.mark.slow
def test_a_training_log_under_snakemake_has_progress_lines(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The demo's c3d training job, rerun by Snakemake with ``progress_seconds`` far
    below a training step's time: its log has a line for every step of every epoch,
    in order, and the config key reached the job through the validated config."""
    local = demo_runs.local_demo(tmp_path_factory)
    wd = demo_runs.clone(local, tmp_path / "wf")
    train = demo_runs.rule_of(wd, METRICS)
    run_snakemake(
        ["--cores", "2", *demo_runs.DEMO, "--config", "progress_seconds=0.000001",
         "--forcerun", train, "--", METRICS],
        cwd=wd,
    )  # fmt: skip
    log = (wd / "logs/models/c3d/meld.log").read_text()
    lines = progress_lines(log)
    with open(wd / "results/models/c3d/meld/train_log.csv") as fh:
        epochs_run = len(list(csv.DictReader(fh)))
    assert lines, log[-2000:]
    epochs, steps = lines[0][1], lines[0][3]
    assert epochs_run >= 1 and steps >= 2
    expected = [
        (e, epochs, s, steps) for e in range(1, epochs_run + 1) for s in range(1, steps + 1)
    ]
    assert lines == expected
