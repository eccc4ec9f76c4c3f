"""Snakemake entry: trace the IFEED images of one key shard to MELD clips (rule ifeed_align)."""

import polars as pl

from crossemotion.ingest.ifeed.align import AlignSettings, align_shard
from crossemotion.io import write_parquet
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
settings = AlignSettings.from_config(dict(sm.params.align), threads=sm.threads)
frame = align_shard(
    pl.read_parquet(sm.input.manifest),
    pl.read_parquet(sm.input.index),
    sm.input.ifeed,
    int(sm.wildcards.shard),
    settings,
)
write_parquet(sm.output[0], frame)
log.info("%s", frame.group_by("status").len().sort("status"))
