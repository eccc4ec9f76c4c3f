"""Snakemake entry: the MELD index (one row per annotated utterance and extra clip)."""

from pathlib import Path

from crossemotion.ingest.archives.download import ChecksumError
from crossemotion.ingest.meld.csvs import verify_md5s
from crossemotion.ingest.meld.index import SPLITS, build_index
from crossemotion.io import write_parquet
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
# meld.annotations entries, local or downloaded (download_meld_annotations)
inputs = dict(sm.input.items())
annotations = {s: Path(inputs[f"csv_{s}"]) for s in SPLITS if f"csv_{s}" in inputs}
try:
    verify_md5s(annotations, dict(sm.params.md5s))
except ChecksumError as err:
    log.error("%s", err)
    raise
root = None if sm.params.text_only else sm.input.unpacked
index = build_index(root, annotations)
write_parquet(sm.output[0], index)
counts = index.group_by("split", "status").len().sort("split", "status")
log.info("MELD index: %d rows\n%s", index.height, counts)
