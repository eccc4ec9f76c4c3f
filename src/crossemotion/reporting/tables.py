"""Benchmark, character-wise and transfer tables (csv + Markdown, with provenance)."""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from crossemotion import layout
from crossemotion.evaluation.bootstrap import paired_bootstrap, seed_summary
from crossemotion.io import write_text
from crossemotion.labels import DEFAULT_TASK, classes_containing, task_of_classes
from crossemotion.reporting.provenance import markdown_header
from crossemotion.reporting.runs import Run, primary_level
from crossemotion.reporting.scores import (
    classification_scores,
    levels_in,
    prediction_classes,
    read_predictions,
)

log = logging.getLogger(__name__)

MEASURED = "measured"
SEED_CLAIM = "seed claim (not measured)"
SEED_TARGET = "seed target (not measured)"
PAIRED = "paired bootstrap (95% CI of the weighted-F1 difference)"
# fusion against each single modality it fuses, on the same MELD test utterances
CI_PAIRS: tuple[tuple[str, str], ...] = (("fusion", "text"), ("fusion", "resnet50"))
SCORE_COLUMNS: tuple[str, ...] = ("accuracy", "weighted_f1", "macro_f1")
# a row averaged over seeds (seed_mean_row): the score columns hold the mean
SEED_COLUMNS: tuple[str, ...] = (
    "n_seeds",
    "seeds",
    "accuracy_sd",
    "weighted_f1_sd",
    "macro_f1_sd",
    "weighted_f1_per_seed",
)
# the per-seed detail stays in the csv; Markdown and HTML show n_seeds and the wF1 sd
CSV_ONLY_SEED_COLUMNS: frozenset[str] = frozenset(
    {"seeds", "accuracy_sd", "macro_f1_sd", "weighted_f1_per_seed"}
)
EXTERNAL = "external reference (not measured here)"
DESIGN_REFERENCE = "reference measured by the design author (not measured here)"

BENCHMARK_COLUMNS: tuple[str, ...] = (
    "source",
    "model",
    "dataset",
    "task",
    "n",
    "accuracy",
    "weighted_f1",
    "macro_f1",
    "baseline_weighted_f1",
    "inference_ms",
    "inference_unit",
    "parameters",
    "train_seconds",
    "epochs_run",
    "data",
    "note",
    # seeds: the score columns above hold the mean over seeds
    *SEED_COLUMNS,
    # paired bootstrap rows (source PAIRED): weighted-F1 difference and its CI
    "wf1_difference",
    "ci_low",
    "ci_high",
    "significant",
)
# shown in Markdown/HTML: the csv-only columns are the provenance flag, the
# per-seed detail and the CI numbers, which the note states in words
BENCHMARK_MD_COLUMNS: tuple[str, ...] = tuple(
    c
    for c in BENCHMARK_COLUMNS
    if c != "data"
    and c not in CSV_ONLY_SEED_COLUMNS
    and c not in BENCHMARK_COLUMNS[BENCHMARK_COLUMNS.index("wf1_difference") :]
)

# with several seeds SEED_COLUMNS follow (one seed keeps exactly these columns)
TRANSFER_COLUMNS: tuple[str, ...] = (
    "source",
    "target",
    "mode",
    "model",
    "level",
    "n",
    "n_excluded",
    "accuracy",
    "weighted_f1",
    "macro_f1",
    "origin",
)

# DESIGN.md "Reference figures": the seed's preliminary table and targets, and
# published MELD text results. Never measurements of this workflow.
REFERENCE_ROWS: tuple[dict[str, Any], ...] = (
    {
        "source": SEED_CLAIM,
        "model": "cnn_lstm",
        "dataset": "meld",
        "accuracy": 0.632,
        "weighted_f1": 0.61,
        "inference_ms": 87.0,
        "inference_unit": "video",
        "note": "seed's preliminary table",
    },
    {
        "source": SEED_CLAIM,
        "model": "c3d",
        "dataset": "meld",
        "accuracy": 0.678,
        "weighted_f1": 0.65,
        "inference_ms": 104.0,
        "inference_unit": "video",
        "note": "seed's preliminary table",
    },
    {
        "source": SEED_TARGET,
        "model": "(target)",
        "dataset": "meld",
        "accuracy": 0.72,
        "weighted_f1": 0.71,
        "note": "seed's target",
    },
    {
        "source": SEED_TARGET,
        "model": "(target)",
        "dataset": "ifeed",
        "accuracy": 0.85,
        "weighted_f1": 0.87,
        "note": "seed's target",
    },
    {
        "source": EXTERNAL,
        "model": "text-CNN (MELD paper)",
        "dataset": "meld",
        "weighted_f1": 0.550,
        "note": "MELD text, official test split",
    },
    {
        "source": DESIGN_REFERENCE,
        "model": "MiniLM frozen + logistic regression",
        "dataset": "meld",
        "weighted_f1": 0.557,
        "note": "MELD text, official test split",
    },
    {
        "source": EXTERNAL,
        "model": "EmoBERTa (dialogue context)",
        "dataset": "meld",
        "weighted_f1": 0.65,
        "note": "MELD text, approximate (~0.65)",
    },
    {
        "source": EXTERNAL,
        "model": "TelME (multimodal SOTA)",
        "dataset": "meld",
        "weighted_f1": 0.67,
        "note": "MELD multimodal, approximate (~0.67)",
    },
)


def _get(mapping: Any, *keys: str) -> Any:
    """Nested .get that tolerates missing levels and non-dict values."""
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _baseline_wf1(
    metrics: Mapping[str, Any], dev: pd.DataFrame, test: pd.DataFrame
) -> float | None:
    """Majority-class weighted F1 on test: from metrics.json, else dev's majority class."""
    for keys in (("baseline", "test", "weighted_f1"), ("baseline", "weighted_f1")):
        value = _get(metrics, *keys)
        if isinstance(value, int | float):
            return float(value)
    if dev.empty or test.empty:
        return None
    majority = dev["label"].value_counts().idxmax()
    return classification_scores(test["label"], [majority] * len(test))["weighted_f1"]


def _check_against_metrics(run: Run, metrics: Mapping[str, Any], scores: Mapping[str, Any]) -> None:
    stated = _get(metrics, "test", "weighted_f1")
    measured = scores["weighted_f1"]
    if not isinstance(stated, int | float) or measured is None:
        return
    if not math.isclose(stated, measured, abs_tol=1e-6):
        log.warning(
            "%s: metrics.json test weighted_f1 %.6f differs from predictions %.6f; "
            "the table uses the predictions",
            run.directory,
            stated,
            measured,
        )


def _task(frame: pd.DataFrame, metrics: Mapping[str, Any]) -> str:
    """The run's task: what its predictions' ``p_{class}`` columns declare, else metrics.json."""
    classes = prediction_classes(list(frame.columns))
    if classes is not None:
        return task_of_classes(classes)
    return str(metrics.get("task") or DEFAULT_TASK)


def benchmark_row(run: Run, demo: bool) -> dict[str, Any]:
    metrics = run.metrics()
    level = primary_level(run.dataset)
    test = read_predictions(run.predictions_path, "test", level=level)
    dev = read_predictions(run.predictions_path, "dev", level=level)
    scores = classification_scores(test["label"], test["prediction"])
    _check_against_metrics(run, metrics, scores)
    return {
        "source": MEASURED,
        "model": run.model,
        "dataset": run.dataset,
        "task": _task(test, metrics),
        **scores,
        "baseline_weighted_f1": _baseline_wf1(metrics, dev, test),
        "inference_ms": _get(metrics, "inference", "ms_per_unit_batch1"),
        "inference_unit": _get(metrics, "inference", "unit"),
        "parameters": _get(metrics, "train", "parameters"),
        "train_seconds": _get(metrics, "train", "seconds"),
        "epochs_run": _get(metrics, "train", "epochs_run"),
        "data": "demo (generated)" if demo else "real",
        "note": f"test split, {level} level" + _ensemble_note(metrics),
    }


def _ensemble_note(metrics: Mapping[str, Any]) -> str:
    members = _get(metrics, "ensemble", "members")
    return f", mean of {len(members)} members' probabilities" if members else ""


def _group_by_model(runs: Iterable[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs of the same model and dataset (its seeds), in first-seen order."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.model, run.dataset), []).append(run)
    return groups


def seed_mean_row(rows: Sequence[Mapping[str, Any]], runs: Sequence[Run]) -> dict[str, Any]:
    """The first seed's row with SCORE_COLUMNS averaged over the seeds' rows, their
    sd, and the SEED_COLUMNS (``rows[i]`` scores ``runs[i]``, the same items)."""
    out = dict(rows[0])
    if len({r.get("n") for r in rows}) > 1:
        log.warning("%s: seeds scored on different numbers of items %s",
                    runs[0].directory, [r.get("n") for r in rows])  # fmt: skip
    for col in SCORE_COLUMNS:
        summary = seed_summary([r[col] for r in rows])
        out[col] = summary.mean
        out[f"{col}_sd"] = summary.sd
    out["n_seeds"] = len(rows)
    out["seeds"] = " ".join(str(r.seed) for r in runs if r.seed is not None) or None
    out["weighted_f1_per_seed"] = " ".join(
        "–" if r["weighted_f1"] is None else f"{r['weighted_f1']:.4f}" for r in rows
    )
    return out


def _seed_row(runs: Sequence[Run], demo: bool) -> dict[str, Any]:
    """One benchmark row per model: the first seed's row with scores averaged over seeds."""
    out = seed_mean_row([benchmark_row(run, demo) for run in runs], runs)
    if len(runs) > 1:
        out["note"] = f"{out['note']}, mean ± sd of {len(runs)} seeds"
    return out


def _test_predictions(runs: Sequence[Run]) -> list[pd.DataFrame]:
    return [
        read_predictions(r.predictions_path, "test", level=primary_level(r.dataset)).set_index("id")
        for r in runs
    ]


def paired_row(a: Sequence[Run], b: Sequence[Run], demo: bool) -> dict[str, Any] | None:
    """Paired bootstrap of model ``a`` minus model ``b`` over the test items both scored."""
    frames = _test_predictions([*a, *b])
    common = frames[0].index
    for frame in frames[1:]:
        common = common.intersection(frame.index)
    if common.empty:
        log.warning("%s and %s share no test items; no CI row", a[0].model, b[0].model)
        return None
    labels = frames[0].loc[common, "label"]
    if any((f.loc[common, "label"] != labels).any() for f in frames[1:]):
        log.warning(
            "%s and %s disagree on the labels of shared test ids; no CI row",
            a[0].model,
            b[0].model,
        )
        return None
    classes = classes_containing(
        [*labels, *(p for f in frames for p in f.loc[common, "prediction"])]
    )
    index = {name: i for i, name in enumerate(classes)}

    def preds(group: Sequence[pd.DataFrame]) -> list[list[int]]:
        return [[index[p] for p in f.loc[common, "prediction"]] for f in group]

    ci = paired_bootstrap(
        [index[x] for x in labels], preds(frames[: len(a)]), preds(frames[len(a) :])
    )
    verdict = "significant" if ci.significant else "not significant"
    return {
        "source": PAIRED,
        "model": f"{a[0].model} vs {b[0].model}",
        "dataset": a[0].dataset,
        "task": _task(frames[0], {}),
        "n": ci.n,
        "n_seeds": min(len(a), len(b)),
        "wf1_difference": ci.difference,
        "ci_low": ci.low,
        "ci_high": ci.high,
        "significant": ci.significant,
        "data": "demo (generated)" if demo else "real",
        "note": (
            f"wF1 {a[0].model} − {b[0].model} = {ci.difference:+.3f}, 95% CI "
            f"[{ci.low:+.3f}, {ci.high:+.3f}], {verdict} ({ci.rounds} paired resamples of "
            f"the {ci.n} test items both scored)"
        ),
    }


def benchmark_table(runs: Iterable[Run], demo: bool, reference_rows: bool = True) -> pd.DataFrame:
    """Measured rows (mean over seeds), the paired-bootstrap rows, then the reference
    rows, which are all emotion figures: they are left out when every measured run is
    of another task (sentiment), whose own reference is its majority baseline column."""
    groups = _group_by_model(runs)
    rows = [_seed_row(group, demo) for group in groups.values()]
    notes: list[str] = []
    for model_a, model_b in CI_PAIRS:
        a, b = groups.get((model_a, "meld")), groups.get((model_b, "meld"))
        absent = [m for m, g in ((model_a, a), (model_b, b)) if not g]
        row = paired_row(a, b, demo) if a and b else None
        if row is not None:
            rows.append(row)
        elif absent:
            # a reader of a text-only run should not wonder where the CI rows went
            notes.append(
                f"No paired-bootstrap row for {model_a} vs {model_b}: this run has no "
                f"{' and no '.join(absent)} model on MELD."
            )
        else:
            notes.append(
                f"No paired-bootstrap row for {model_a} vs {model_b}: their test "
                "predictions could not be paired (no shared item, or different labels "
                "on shared ids; see the log)."
            )
    if reference_rows and (not rows or any(r["task"] == DEFAULT_TASK for r in rows)):
        rows += [{**ref, "task": DEFAULT_TASK, "data": "reference"} for ref in REFERENCE_ROWS]
    frame = pd.DataFrame(rows, columns=list(BENCHMARK_COLUMNS))
    frame.attrs["notes"] = notes
    return frame


# metrics.json "excluded" counts per level of a transfer cell
_EXCLUDED_UNIT = {"utterance": "utterances", "face": "faces", "image": "faces"}


def _level_rows(
    run: Run, mode: str, source: str, drop: set[str] | None = None
) -> list[dict[str, Any]]:
    """Rows per evaluation level: recomputed where predictions hold that level.

    ``drop``: items (MELD keys, IFEED image ids) to leave out of a target-only
    run, so it is scored on the items the transfer cells kept; a transfer
    cell's predictions already lack them and its metrics.json counts them.
    """
    base = {"source": source, "target": run.dataset, "mode": mode, "model": run.model}
    metrics = run.metrics()
    present = levels_in(run.predictions_path)
    wanted = ["utterance", "face"] if run.dataset == "meld" else ["image"]
    column = "key" if run.dataset == "meld" else "id"
    rows = []
    for level in wanted:
        if level in present or (not present and level == primary_level(run.dataset)):
            test = read_predictions(run.predictions_path, "test", level=level)
            excluded = _get(metrics, "excluded", "test", _EXCLUDED_UNIT[level])
            if drop is not None:
                if column not in test.columns:
                    raise ValueError(f"{run.predictions_path}: no {column!r} column to match "
                                     "the transfer cells' leakage exclusions on")  # fmt: skip
                left_out = test[column].astype(str).isin(drop)
                test, excluded = test[~left_out], int(left_out.sum())
            scores = classification_scores(test["label"], test["prediction"])
            rows.append({**base, "level": level, **scores, "n_excluded": excluded,
                         "origin": layout.PREDICTIONS})  # fmt: skip
            continue
        stated = _get(metrics, "levels", level)
        if isinstance(stated, Mapping) and stated.get("weighted_f1") is not None:
            rows.append(
                {
                    **base,
                    "level": level,
                    **{k: stated.get(k) for k in ("n", "accuracy", "weighted_f1", "macro_f1")},
                    "n_excluded": _get(metrics, "excluded", "test", _EXCLUDED_UNIT[level]),
                    "origin": layout.METRICS,
                }
            )
    return rows


def _seed_level_rows(
    runs: Sequence[Run], mode: str, source: str, drop: set[str] | None = None
) -> list[dict[str, Any]]:
    """``_level_rows`` of one cell (or target-only model) per seed, averaged per level."""
    by_level: dict[str, tuple[list[dict[str, Any]], list[Run]]] = {}
    for run in runs:
        for row in _level_rows(run, mode, source, drop):
            rows, seeds = by_level.setdefault(row["level"], ([], []))
            rows.append(row)
            seeds.append(run)
    return [seed_mean_row(rows, seeds) for rows, seeds in by_level.values()]


def transfer_table(
    cells: Sequence[Run],
    target_only: Mapping[str, Sequence[Run]],
    excluded: Mapping[tuple[str, str], set[str]] | None = None,
) -> pd.DataFrame:
    """Transfer cells plus, per direction, the target-only model as reference.

    ``cells`` holds one run per cell and seed, ``target_only`` the target's
    model runs per seed: each row is the mean over its seeds, and with several
    seeds the SEED_COLUMNS give the sd and the per-seed values.
    ``excluded``: (source, target) -> the target's test items the cells left
    out for leakage (``crossemotion.ingest.ifeed.leakage.excluded_items``); the
    target-only row leaves them out too, so all rows of a target share ``n``.
    """
    groups: dict[tuple[str, str, str, str], list[Run]] = {}
    for cell in cells:
        groups.setdefault((cell.source, cell.dataset, cell.mode, cell.model), []).append(cell)
    rows: list[dict[str, Any]] = []
    directions: list[tuple[str, str]] = []
    for (source, target, mode, _model), runs in groups.items():
        rows += _seed_level_rows(runs, mode, source)
        if (source, target) not in directions:
            directions.append((source, target))
    for source, target in directions:
        if target_only.get(target):
            drop = None if excluded is None else excluded.get((source, target), set())
            rows += _seed_level_rows(target_only[target], "target_only", source, drop)
        else:
            log.warning("no target-only model for %s; its reference row is left out", target)
    several = any(len(runs) > 1 for runs in [*groups.values(), *target_only.values()])
    columns = [*TRANSFER_COLUMNS, *(SEED_COLUMNS if several else ())]
    frame = pd.DataFrame(rows, columns=columns)
    for (source, target, level), part in frame.groupby(["source", "target", "level"]):
        if part["n"].nunique() > 1:
            log.warning("%s -> %s (%s level): rows scored on different items, n %s",
                        source, target, level, sorted(part["n"].unique()))  # fmt: skip
    return frame


def markdown_columns(table: str, frame: pd.DataFrame) -> list[str] | None:
    """Columns Markdown and HTML show (None: all): the csv keeps the per-seed detail."""
    if table == "benchmark":
        return list(BENCHMARK_MD_COLUMNS)
    shown = [c for c in frame.columns if c not in CSV_ONLY_SEED_COLUMNS]
    return shown if len(shown) < len(frame.columns) else None


INT_COLUMNS: tuple[str, ...] = ("n", "n_excluded", "parameters", "epochs_run", "n_seeds")


def _with_int_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts as nullable integers so the csv says 120, not 120.0."""
    out = frame.copy()
    for col in INT_COLUMNS:
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce").round().astype("Int64")
    return out


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}"
    if isinstance(value, int) or hasattr(value, "__index__"):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def to_markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for record in frame.astype(object).where(frame.notna(), None).to_dict("records"):
        lines.append("| " + " | ".join(_fmt(record[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


_HTML_STYLE = """
body { font-family: sans-serif; font-size: 13px; margin: 1em; }
.demo { background: #fde8e8; border: 1px solid #c00; padding: .5em; font-weight: bold; }
.prov { color: #555; margin: .5em 0 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #eef; }
td:nth-child(-n+4) { text-align: left; }
"""


def to_html(
    frame: pd.DataFrame, title: str, prov: Mapping[str, Any], notes: Sequence[str] = ()
) -> str:
    """Stand-alone HTML page of a table (``notes`` below it); the Snakemake report
    shows it inline."""
    body = frame.astype(object).where(frame.notna(), None).map(_fmt)
    demo = (
        '<p class="demo">DEMO DATA (generated) — not a benchmark of MELD/IFEED</p>'
        if prov.get("demo")
        else ""
    )
    prov_line = " · ".join(f"{k}: {html.escape(str(v))}" for k, v in prov.items())
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_HTML_STYLE}</style></head><body><h2>{html.escape(title)}</h2>{demo}"
        f"<p class='prov'>{prov_line}</p>{body.to_html(index=False, classes='table')}"
        f"{_html_notes(notes)}</body></html>\n"
    )


def _html_notes(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    return "<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"


def _markdown_notes(notes: Sequence[str]) -> str:
    return "".join(f"\n- {n}" for n in notes) + ("\n" if notes else "")


def write_table(
    frame: pd.DataFrame,
    csv_path: str | Path,
    md_path: str | Path,
    title: str,
    prov: Mapping[str, Any],
    md_columns: Sequence[str] | None = None,
    html_path: str | Path | None = None,
) -> None:
    """csv with provenance columns; Markdown (and HTML) with a provenance header, and
    the frame's ``attrs["notes"]`` (what the table leaves out, and why) below it."""
    notes = list(frame.attrs.get("notes", []))
    frame = _with_int_columns(frame)
    with_prov = frame.copy()
    for key, value in prov.items():
        with_prov[key] = value
    write_text(csv_path, with_prov.to_csv(index=False))
    shown = frame[list(md_columns)] if md_columns else frame
    md = markdown_header(title, prov) + "\n" + to_markdown(shown) + _markdown_notes(notes)
    write_text(md_path, md)
    if html_path is not None:
        write_text(html_path, to_html(shown, title, prov, notes))
