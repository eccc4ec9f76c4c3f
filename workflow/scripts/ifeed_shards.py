"""Snakemake entry: IFEED manifest, faces shards and summary."""

from crossemotion.ingest.faces.crops import FaceSettings
from crossemotion.ingest.ifeed.members import ingest
from crossemotion.layout import shard_dir
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]
setup_logging(sm.log[0])
# IFEED's faces are aligned as MELD's (meld.faces: detector, align, margin) unless
# ifeed.align_faces is false: then each image's centre crop
faces = FaceSettings.from_config(dict(sm.params.faces), threads=sm.threads)
ingest(
    sm.input.unpacked,
    sm.input.report,
    # the rule's outputs are this folder's {split}/part-NNNN.parquet (crossemotion.layout)
    shard_dir("ifeed", "faces"),
    sm.output.manifest,
    sm.output.summary,
    face_size=int(sm.params.face_size),
    n_shards=int(sm.params.n_shards),
    max_bad_fraction=float(sm.params.max_bad_fraction),
    jpeg_quality=int(sm.params.jpeg_quality),
    threads=sm.threads,
    aligner=faces.ifeed_aligner() if sm.params.align_faces else None,
)
