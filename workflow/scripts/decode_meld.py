"""Snakemake entry: decode one MELD shard into clips and per-clip statuses."""

import polars as pl

from crossemotion.ingest.meld.index import decodable_rows
from crossemotion.ingest.video.decode import DecodeSettings, decode_shard
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
split, shard = sm.wildcards.split, int(sm.wildcards.shard)
rows = decodable_rows(pl.read_parquet(sm.input.index), split, shard, sm.params.n_shards)
settings = DecodeSettings.from_config(dict(sm.params.decode))
log.info("decoding %d clips of %s shard %d with %s", rows.height, split, shard, settings)
status = decode_shard(rows, settings, sm.output.clips, sm.output.status, workers=sm.threads)
log.info("statuses:\n%s", status.group_by("status").len())
if status.height:
    log.info(
        "decode seconds per clip: mean %.3f, max %.3f",
        status["decode_seconds"].mean(),
        status["decode_seconds"].max(),
    )
