"""Snakemake entry: speaker face crops for one MELD clips shard."""

from crossemotion.ingest.faces.crops import FaceSettings, faces_shard
from crossemotion.ingest.faces.references import References
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
# the detector runs on the job's threads (onnxruntime would take every core)
settings = FaceSettings.from_config(
    dict(sm.params.faces), jpeg_quality=sm.params.jpeg_quality, threads=sm.threads
)
# appearance references of the cast, with meld.faces.selector: reference
refs = getattr(sm.input, "references", None)
references = References.read(refs) if refs else None
counts = faces_shard(
    sm.input[0],
    sm.output.faces,
    settings,
    references=references,
    speakers_out=sm.output.speakers,
)
frames = int(counts["frames"].sum()) if counts.height else 0
found = int(counts["faces_found"].sum()) if counts.height else 0
log.info(
    "faces: %d clips, %d of %d frames with a face (%.1f%%)",
    counts.height,
    found,
    frames,
    100 * found / max(frames, 1),
)
if counts.height:
    by_status = counts.group_by("status").len().sort("status").iter_rows()
    log.info("speakers (selector %s): %s", settings.selector,
             ", ".join(f"{status} {n}" for status, n in by_status))  # fmt: skip
