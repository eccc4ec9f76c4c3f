"""Snakemake entry: speaker-face yardstick (rule speaker_faces), the configured
detector and selector, each of ``report.speaker_faces.compare_detectors`` and each of
``report.speaker_faces.compare_selectors`` on the same frames, split by clip kind."""

import time

import polars as pl

from crossemotion.ingest.faces.crops import FaceSettings
from crossemotion.ingest.faces.references import References
from crossemotion.io import write_parquet
from crossemotion.logs import setup_logging
from crossemotion.reporting.provenance import run_provenance
from crossemotion.reporting.speaker_faces import compared_items, speaker_table
from crossemotion.reporting.tables import write_table

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
settings = FaceSettings.from_config(dict(sm.params.faces), threads=sm.threads)
compare = list(sm.params.compare)
selectors = list(sm.params.selectors)
refs = getattr(sm.input, "references", None)
t0 = time.perf_counter()
items = compared_items(
    pl.read_parquet(sm.input.alignment),
    pl.read_parquet(sm.input.index),
    list(sm.input.faces),
    list(sm.input.clips),
    float(sm.params.crop_scale),
    settings,
    compare,
    align=bool(sm.params.align),
    references=References.read(refs) if refs else None,
    selectors=selectors,
)
log.info("speaker faces: %s (%s), comparison detectors %s, comparison selectors %s: %.1f s",
         settings.detector, settings.selector, compare or "none", selectors or "none",
         time.perf_counter() - t0)  # fmt: skip
write_parquet(sm.output.detail, items)
table = speaker_table(items)
prov = run_provenance(dict(sm.params.settings))
title = (
    "Speaker faces: MELD's face choice vs aligned IFEED boxes (hit: IoU >= 0.5), "
    "per detector and selector on the same frames, by clip kind"
)
write_table(table, sm.output.csv, sm.output.md, title, prov, html_path=sm.output.html)
log.info("speaker faces:\n%s", table.to_string(index=False))
