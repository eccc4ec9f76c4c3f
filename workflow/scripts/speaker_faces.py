"""Snakemake entry: speaker-face yardstick (rule speaker_faces)."""

import polars as pl

from crossemotion.io import write_parquet
from crossemotion.logs import setup_logging
from crossemotion.reporting.provenance import provenance
from crossemotion.reporting.speaker_faces import speaker_items, speaker_table
from crossemotion.reporting.tables import write_table

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
items = speaker_items(
    pl.read_parquet(sm.input.alignment),
    pl.read_parquet(sm.input.index),
    list(sm.input.faces),
    list(sm.input.clips),
    float(sm.params.crop_scale),
)
write_parquet(sm.output.detail, items)
table = speaker_table(items)
settings = dict(sm.params.settings)
prov = provenance(
    settings.get("config", {}), settings.get("data_files", []), settings.get("root", ".")
)
title = "Speaker faces: MELD's face choice vs aligned IFEED boxes (hit: IoU >= 0.5)"
write_table(table, sm.output.csv, sm.output.md, title, prov, html_path=sm.output.html)
log.info("speaker faces:\n%s", table.to_string(index=False))
