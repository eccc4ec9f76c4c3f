"""Snakemake entry: the cast's appearance references from matched IFEED faces."""

import polars as pl

from crossemotion.ingest.faces.references import build_references
from crossemotion.io import write_parquet
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
refs = build_references(pl.read_parquet(sm.input.alignment), sm.input.ifeed, seed=sm.params.seed)
write_parquet(sm.output[0], refs)
log.info("references per cast member: %s", dict(refs.group_by("character").len().rows()))
