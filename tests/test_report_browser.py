"""The report rules end to end on fabricated run outputs, and the report in headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, ROOT, run_snakemake
from tests.test_reporting import RUNS, fabricate_results

REPORT_RULES = [
    "benchmark_table",
    "character_table",
    "transfer_table",
    "confusion_figure",
    "training_figure",
    "transfer_heatmap",
    "character_figure",
    "report_html",
]


def _fabricate_ifeed_report_inputs(results: Path) -> None:
    """What the alignment, leakage and speaker-face rules hand the report, given here
    like the model outputs (no leak links: the transfer rows keep every item)."""
    import polars as pl

    from crossemotion.ingest.ifeed.leakage import LINK_SCHEMA

    (results / "ifeed").mkdir(parents=True, exist_ok=True)
    (results / "tables").mkdir(parents=True, exist_ok=True)
    pl.DataFrame(schema=LINK_SCHEMA).write_parquet(results / "ifeed" / "leakage.parquet")
    (results / "ifeed" / "alignment.html").write_text("<html><body>alignment</body></html>")
    (results / "tables" / "speaker_faces.html").write_text("<html><body>faces</body></html>")
    for name in ("speakers", "speakers_by_character"):
        (results / "tables" / f"{name}.html").write_text(f"<html><body>{name}</body></html>")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workflow copy whose model/transfer outputs are fabricated; only the report
    rules may run, so the upstream rules' files count as given inputs."""
    dest = tmp_path_factory.mktemp("reportwf")
    for name in ("Snakefile", "workflow", "config", "src", "envs"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    fabricate_results(dest)
    _fabricate_ifeed_report_inputs(dest / "results")
    run_snakemake(
        [
            "--cores",
            "2",
            "results/report.html",
            "--configfile",
            "config/demo.yaml",
            "--allowed-rules",
            *REPORT_RULES,
        ],
        cwd=dest,
        timeout=900,
    )
    return dest


@pytest.mark.slow
def test_report_rules_write_tables_figures_and_report(built: Path) -> None:
    results = built / "results"
    for name in ("benchmark", "character_wise", "transfer"):
        for ext in ("csv", "md", "html"):
            assert (results / "tables" / f"{name}.{ext}").stat().st_size > 0
    chars = pd.read_csv(results / "tables" / "character_wise.csv")
    assert len(chars) == 7 * (len(RUNS) + 6)
    transfer = pd.read_csv(results / "tables" / "transfer.csv")
    assert set(transfer["mode"]) == {"zero_shot", "finetune_0.1", "finetune_1", "target_only"}
    for model, dataset in RUNS:
        assert (results / "figures" / "confusion" / model / f"{dataset}.png").exists()
        assert (results / "figures" / "training" / model / f"{dataset}.png").exists()
    assert (results / "figures" / "transfer_heatmap.png").exists()
    html = (results / "report.html").read_text()
    assert "benchmark.html" in html and "transfer_heatmap.png" in html
    # No temp folder of the nested report call is left behind.
    assert not list(results.glob(".report.*"))


@pytest.mark.slow
@pytest.mark.browser
def test_report_renders_tables_and_figures_in_chromium(built: Path, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium (make test-deps)")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto((built / "results" / "report.html").as_uri())
            page.get_by_text("DEMO DATA (generated).").wait_for()

            page.get_by_text("Tables", exact=True).click()
            page.locator("tr", has_text="benchmark").first.locator("a[iconname=eye]").click()
            frame = page.frame_locator("iframe").first
            table_text = frame.locator("table").inner_text()
            assert "seed claim (not measured)" in table_text
            assert "cnn_lstm" in table_text and "fusion" in table_text
            assert "DEMO DATA" in frame.locator("body").inner_text()
            page.screenshot(path=tmp_path / "benchmark.png", full_page=True)

            page.get_by_text("Results", exact=True).first.click()
            page.get_by_text("Confusion matrices", exact=True).click()
            page.locator("tr", has_text="resnet50").first.locator("a[iconname=eye]").click()
            shown = page.locator("img[src^='data:image/png']")
            shown.first.wait_for()
            assert shown.first.evaluate("e => e.naturalWidth") > 200
            page.screenshot(path=tmp_path / "confusion.png", full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    assert (tmp_path / "benchmark.png").stat().st_size > 10_000
