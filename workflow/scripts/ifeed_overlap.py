"""Snakemake entry: IFEED source keys vs MELD splits (leakage report)."""

from crossemotion.data.ifeed import write_overlap
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
table = write_overlap(sm.input.manifest, [sm.input.meld], sm.output.csv, sm.output.md)
log.info("overlap: %d IFEED (split, key) rows, %d images", table.height, table["n_images"].sum())
