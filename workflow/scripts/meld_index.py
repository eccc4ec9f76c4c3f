"""Snakemake entry: the MELD index (one row per annotated utterance and extra clip)."""

from crossemotion.data.meld import build_index, resolve_annotations
from crossemotion.io import write_parquet
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
annotations = resolve_annotations(dict(sm.params.annotations), sm.params.download_dir)
root = None if sm.params.text_only else sm.input.unpacked
index = build_index(root, annotations)
write_parquet(sm.output[0], index)
counts = index.group_by("split", "status").len().sort("split", "status")
log.info("MELD index: %d rows\n%s", index.height, counts)
