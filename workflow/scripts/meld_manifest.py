"""Snakemake entry: the MELD manifest and summary; enforces max_bad_fraction."""

import polars as pl

from crossemotion.ingest import manifest as mf
from crossemotion.io import write_parquet, write_text
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
index = pl.read_parquet(sm.input.index)
statuses = pl.concat([pl.read_parquet(p) for p in sm.input.status], how="vertical")
faces = pl.concat(
    [pl.read_parquet(p, columns=["split", "key"]) for p in sm.input.faces], how="vertical"
)
speakers = pl.concat([pl.read_parquet(p) for p in sm.input.speakers], how="vertical_relaxed")
manifest = mf.build_meld_manifest(index, statuses, faces, speakers)
try:
    share = mf.check_bad_fraction(manifest["status"].to_list(), sm.params.max_bad_fraction, "MELD")
except mf.TooManyBadItems as err:
    log.error("%s\n%s", err, mf.meld_summary(manifest))
    raise
summary = mf.meld_summary(manifest, share)
write_parquet(sm.output.manifest, manifest)
write_text(sm.output.summary, summary)
log.info("\n%s", summary)
