"""Snakemake entry: MELD text shard of one split (annotated utterances, known label)."""

import polars as pl

from crossemotion.ingest.meld.index import text_rows
from crossemotion.io import write_parquet
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
rows = text_rows(pl.read_parquet(sm.input[0]), sm.wildcards.split)
write_parquet(sm.output[0], rows)
log.info("MELD text %s: %d utterances", sm.wildcards.split, rows.height)
