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
counts = faces_shard(sm.input[0], sm.output[0], settings, references=references)
frames = int(counts["frames"].sum()) if counts.height else 0
found = int(counts["faces_found"].sum()) if counts.height else 0
log.info(
    "faces: %d clips, %d of %d frames with a face (%.1f%%)",
    counts.height,
    found,
    frames,
    100 * found / max(frames, 1),
)
