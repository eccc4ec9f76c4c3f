"""Snakemake entry: IFEED image -> MELD utterance leak links (rule ifeed_leakage)."""

import polars as pl

from crossemotion.ingest.ifeed.leakage import leak_links, summary
from crossemotion.io import write_parquet
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
alignment = pl.read_parquet(sm.input.alignment)
links = leak_links(alignment, pl.read_parquet(sm.input.index), sm.params.policy)
write_parquet(sm.output[0], links)
log.info("leak links (policy %s): %s", sm.params.policy, summary(links, alignment))
