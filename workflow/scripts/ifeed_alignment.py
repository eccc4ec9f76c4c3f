"""Snakemake entry: merge the alignment shards into alignment.parquet + alignment.md."""

from crossemotion.ingest.ifeed.align import (
    AlignSettings,
    alignment_markdown,
    folder_table,
    merge_shards,
)
from crossemotion.io import write_parquet, write_text
from crossemotion.logs import setup_logging
from crossemotion.reporting.tables import to_html

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
frame = merge_shards(list(sm.input))
write_parquet(sm.output.parquet, frame)
settings = AlignSettings.from_config(dict(sm.params.align))
write_text(sm.output.md, alignment_markdown(frame, settings))
prov = {"method": settings.method, "threshold": settings.threshold, "margin": settings.margin,
        "demo": bool(sm.config.get("demo"))}  # fmt: skip
title = "IFEED images traced to MELD clips"
write_text(sm.output.html, to_html(folder_table(frame).to_pandas(), title, prov))
log.info("alignment: %d images\n%s", frame.height, frame.group_by("status").len().sort("status"))
