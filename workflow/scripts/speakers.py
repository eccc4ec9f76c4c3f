"""Snakemake entry: the per-utterance speaker table and its character-wise summary
(rule speakers_table) from the speakers, faces and clips shards and the IFEED alignment."""

import polars as pl

from crossemotion.logs import setup_logging
from crossemotion.reporting.provenance import run_provenance
from crossemotion.reporting.speakers import (
    as_pandas,
    read_inputs,
    speakers_by_character,
    speakers_table,
)
from crossemotion.reporting.tables import write_table

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
speakers, faces, clips = read_inputs(list(sm.input.speakers), list(sm.input.faces),
                                     list(sm.input.clips))  # fmt: skip
table = speakers_table(speakers, faces, pl.read_parquet(sm.input.alignment), clips)
summary = speakers_by_character(table)
prov = run_provenance(dict(sm.params.settings))
write_table(
    as_pandas(table),
    sm.output.csv,
    sm.output.md,
    "Speakers: how each MELD utterance's speaker face was chosen "
    "(IFEED check: IoU >= 0.5 with every aligned box of the speaker)",
    prov,
    html_path=sm.output.html,
)
write_table(
    summary,
    sm.output.by_character_csv,
    sm.output.by_character_md,
    "Speakers by character: speaker found, IFEED agreement, one track per utterance",
    prov,
    html_path=sm.output.by_character_html,
)
log.info("speakers: %d utterances\n%s", table.height, summary.to_string(index=False))
