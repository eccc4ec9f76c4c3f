"""A change reruns exactly what it affects (default rerun triggers: mtime, params,
input, software-env, code), checked with `snakemake -n --summary` on a copy of a
finished demo run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests import demo_runs

pytestmark = pytest.mark.slow

C3D = "results/models/c3d/meld/"


@pytest.fixture
def done(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_runs.clone(demo_runs.local_demo(tmp_path_factory), tmp_path / "wf")


def test_finished_run_is_up_to_date(done: Path):
    # The baseline every other test here relies on: a copy changes nothing.
    assert demo_runs.plan(done).pending == {}


def test_model_config_change_reruns_that_model_only(done: Path):
    (done / "more_epochs.yaml").write_text("models:\n  c3d:\n    epochs: 11\n")
    changed = demo_runs.plan(done, configs=("more_epochs.yaml",))
    assert changed.pending, "a new epochs value must rerun c3d (rule params carry the config)"
    assert all(path.startswith(C3D) for path in changed.pending), changed.pending
    assert f"{C3D}metrics.json" in changed.pending

    # Over the whole workflow (other models not built in this copy), the change adds
    # exactly the c3d outputs to what is pending, and what reads them stays pending.
    everything = ["all"]
    before = demo_runs.plan(done, targets=everything)
    after = demo_runs.plan(done, targets=everything, configs=("more_epochs.yaml",))
    added = set(after.pending) - set(before.pending)
    assert added and all(path.startswith(C3D) for path in added), added
    assert {p for p in after.pending if p.startswith("results/tables/")}


def test_new_ifeed_archive_reruns_ifeed_side_only(done: Path):
    archive = done / "resources/demo/IFEED_Base.zip"
    later = time.time() + 5
    os.utime(archive, (later, later))
    changed = demo_runs.plan(done)
    assert changed.under("results/shards/ifeed/"), changed.pending
    assert "results/ifeed/manifest.parquet" in changed.pending
    meld_side = ("results/meld/", "results/shards/meld/", C3D, "resources/demo/MELD")
    assert not [p for p in changed.pending if p.startswith(meld_side)], changed.pending


def test_forcerun_decode_reruns_decode_and_downstream(done: Path):
    decode = demo_runs.rule_of(done, "results/shards/meld/clips/train/part-0000.parquet")
    changed = demo_runs.plan(done, "--forcerun", decode)
    clips = {str(p.relative_to(done)) for p in done.glob("results/shards/meld/clips/*/*")}
    assert clips and clips <= set(changed.pending)
    faces = {str(p.relative_to(done)) for p in done.glob("results/shards/meld/faces/*/*")}
    assert faces <= set(changed.pending)
    assert "results/meld/manifest.parquet" in changed.pending
    assert f"{C3D}metrics.json" in changed.pending
    assert not changed.under("results/shards/ifeed/")
    assert not changed.under("results/ifeed/")
    assert "results/meld/index.parquet" not in changed.pending


def script_of(done: Path, rule: str) -> Path:
    """The `script:` file of a rule, read from the rule files."""
    for smk in (done / "workflow/rules").glob("*.smk"):
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() == f"rule {rule}:":
                for body in lines[i + 1 :]:
                    if body.strip().startswith("rule "):
                        break
                    if body.strip().startswith('"../scripts/'):
                        return smk.parent / body.strip().strip('",')
    raise AssertionError(f"rule {rule} has no script")


def test_script_change_reruns_its_rule(done: Path):
    faces_rule = demo_runs.rule_of(done, "results/shards/meld/faces/train/part-0000.parquet")
    script = script_of(done, faces_rule)
    script.write_text(script.read_text() + "\n# a changed line\n")
    changed = demo_runs.plan(done)
    assert faces_rule in changed.rules()
    faces = {str(p.relative_to(done)) for p in done.glob("results/shards/meld/faces/*/*")}
    assert faces <= set(changed.pending)
    assert not changed.under("results/shards/meld/clips/")
    assert not changed.under("results/shards/ifeed/")


def test_library_change_is_not_a_rerun_trigger(done: Path):
    """Snakemake tracks rule code and scripts, not imported modules (see docs/cluster.md)."""
    module = done / "src/crossemotion/labels.py"
    module.write_text(module.read_text() + "\n# a changed line\n")
    assert demo_runs.plan(done).pending == {}
