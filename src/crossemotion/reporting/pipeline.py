"""Entry points the workflow scripts call: one table or one figure by name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from crossemotion.layout import config_seeds
from crossemotion.reporting import figures
from crossemotion.reporting.character import character_table
from crossemotion.reporting.provenance import run_provenance
from crossemotion.reporting.runs import Run, primary_level, seed_runs, transfer_run
from crossemotion.reporting.scores import read_predictions
from crossemotion.reporting.tables import (
    benchmark_table,
    markdown_columns,
    transfer_table,
    write_table,
)

TITLES = {
    "benchmark": "Benchmark: models × datasets (test split)",
    "character_wise": "Character-wise analysis (test split)",
    "transfer": "Cross-dataset transfer (test split of the target)",
}


def _cells(
    cells: Sequence[tuple[str, str, str]], model: str, results: str | Path, seeds: Sequence[int]
) -> list[Run]:
    """Every seed's run of every cell."""
    return [
        transfer_run(model, s, t, m, results, seed, seeds) for s, t, m in cells for seed in seeds
    ]


def _excluded(
    settings: Mapping[str, Any], cells: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str], set[str]] | None:
    """(source, target) -> test items the transfer cells left out (None: nothing was)."""
    path = settings.get("leakage")
    if not path:
        return None
    import polars as pl

    from crossemotion.ingest.ifeed.leakage import excluded_items

    links = pl.read_parquet(path)
    return {(s, t): excluded_items(links, s, t)["test"] for s, t, _m in cells}


def build_table(
    table: str,
    settings: Mapping[str, Any],
    runs: Sequence[tuple[str, str]] = (),
    cells: Sequence[tuple[str, str, str]] = (),
    transfer_model: str = "resnet50",
    results: str | Path = "results",
) -> pd.DataFrame:
    seeds = config_seeds(settings.get("config") or {})
    every_seed = [r for m, d in runs for r in seed_runs(m, d, seeds, results)]
    if table == "benchmark":
        return benchmark_table(
            every_seed, bool(settings.get("demo")), bool(settings.get("reference_rows", True))
        )
    if table == "character_wise":
        return character_table(every_seed + _cells(cells, transfer_model, results, seeds))
    if table == "transfer":
        targets = {t for _s, t, _m in cells}
        # A target whose own model run is disabled has no reference row (logged);
        # the cells of seed S are compared with the target's model of seed S.
        target_only = {
            t: [
                r
                for r in seed_runs(transfer_model, t, seeds, results)
                if r.predictions_path.exists()
            ]
            for t in targets
        }
        return transfer_table(
            _cells(cells, transfer_model, results, seeds), target_only, _excluded(settings, cells)
        )
    raise ValueError(f"unknown table {table!r}")


def write_named_table(
    table: str,
    csv_path: str | Path,
    md_path: str | Path,
    settings: Mapping[str, Any],
    runs: Sequence[tuple[str, str]] = (),
    cells: Sequence[tuple[str, str, str]] = (),
    transfer_model: str = "resnet50",
    results: str | Path = "results",
    html_path: str | Path | None = None,
) -> pd.DataFrame:
    frame = build_table(table, settings, runs, cells, transfer_model, results)
    prov = run_provenance(settings)
    md_columns = markdown_columns(table, frame)
    write_table(frame, csv_path, md_path, TITLES[table], prov, md_columns, html_path)
    return frame


def draw_named_figure(
    figure: str, source: str | Path, target: str | Path, demo: bool, title: str = ""
) -> None:
    if figure == "confusion":
        dataset = Path(target).stem
        frame = read_predictions(source, "test", level=primary_level(dataset))
        figures.confusion_figure(frame, target, title, demo)
    elif figure == "training":
        figures.training_curves(pd.read_csv(source), target, title, demo)
    elif figure == "transfer_heatmap":
        figures.transfer_heatmap(pd.read_csv(source), target, demo)
    elif figure == "character_bars":
        figures.character_bars(pd.read_csv(source), target, demo)
    else:
        raise ValueError(f"unknown figure {figure!r}")
