"""Face crops from the sampled MELD frames.

Speaker heuristic. MELD clips are cut around one utterance, and the camera
frames its speaker largest and most central. In each sampled frame the
detector's faces are ranked by area (in 10% buckets of the largest face) and,
within a bucket, by distance of the box centre to the frame centre
(``face_detect.rank_speaker_first``); the first one is taken as the speaker.
So: largest face, near-ties go to the most central. One crop per frame at
most; ``n_faces`` records how many faces the frame held so consumers can
drop ambiguous multi-face frames if they wish. With ``selector: reference``
the face most like the speaker's aligned IFEED faces replaces the geometric
choice where that one does not look like the speaker (``face_refs``).

Crop. ``crossemotion.ingest.faces.align.face_crop``, the project's one crop:
with ``align: true`` and a detector that gives landmarks (retinaface, yunet)
the face is warped by a similarity transform from its five landmarks onto the
ArcFace template at ``size``; otherwise the box is grown by ``margin`` (a share
of its larger side) on every side, made square around its centre, padded with
black where it leaves the frame, resized to ``size``. JPEG-encoded. Rows
follow the faces-shard schema shared with IFEED (docs/architecture.md) and
keep the detector's box, score and landmarks, so the faces can be re-cropped
from the clips shard's frames without detecting again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from crossemotion.codec import decode_jpeg, encode_jpeg
from crossemotion.ingest.faces.align import face_crop, square_crop
from crossemotion.ingest.faces.detect import (
    DEFAULT_DETECTOR,
    WITH_LANDMARKS,
    FaceDetector,
    get_detector,
)
from crossemotion.ingest.faces.references import References
from crossemotion.ingest.ifeed.members import FACE_SHARD_SCHEMA, Aligner
from crossemotion.ingest.video.decode import LogStream
from crossemotion.io import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceSettings:
    detector: str = DEFAULT_DETECTOR
    size: int = 224
    margin: float = 0.2
    min_size: int = 40
    max_per_frame: int = 6
    jpeg_quality: int = 90
    # largest: the geometric speaker choice; reference: the face most like the
    # speaker's aligned IFEED faces (crossemotion.ingest.faces.references)
    selector: str = "largest"
    # warp each face onto the five-landmark template (detectors with landmarks)
    align: bool = True
    # the learned detectors' score threshold
    score_threshold: float = 0.6
    # intra-op threads of the detector (the job's threads)
    threads: int = 1

    @classmethod
    def from_config(
        cls, cfg: dict[str, Any], jpeg_quality: int = 90, threads: int = 1
    ) -> FaceSettings:
        keys = ("detector", "size", "margin", "min_size", "max_per_frame", "selector", "align",
                "score_threshold")  # fmt: skip
        known = {k: cfg[k] for k in keys if k in cfg}
        return cls(**known, jpeg_quality=jpeg_quality, threads=threads)

    def detector_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"min_size": self.min_size, "max_faces": self.max_per_frame,
                                  "threads": self.threads}  # fmt: skip
        if not self.detector.startswith("haar"):
            kwargs["score_threshold"] = self.score_threshold
        return kwargs

    def build_detector(self) -> FaceDetector:
        return get_detector(self.detector, **self.detector_kwargs())

    def ifeed_aligner(self) -> Aligner | None:
        """How IFEED's images are cropped: aligned as MELD's faces where the detector
        finds one (``align`` and a detector with landmarks), else None (centre crop).

        IFEED images are tight crops of one face: the faces are taken at any
        size the detector can see (its own smallest anchor, 16 px), one per image.
        """
        if not self.align or self.detector not in WITH_LANDMARKS:
            return None
        kwargs = {**self.detector_kwargs(), "min_size": 16, "max_faces": 1}
        return Aligner(get_detector(self.detector, **kwargs), margin=self.margin)


__all__ = ["FaceSettings", "clip_faces", "face_crop", "faces_shard", "square_crop"]


def clip_faces(
    row: dict[str, Any],
    detector: FaceDetector,
    s: FaceSettings,
    references: References | None = None,
) -> list[dict[str, Any]]:
    """Speaker face rows for one clips-shard row (one per frame with a face).

    ``references``: pick the face most like the speaker (``face_refs.References.pick``)
    instead of the geometric first.
    """
    out = []
    for index, data in enumerate(row["frames"] or []):
        try:
            image = decode_jpeg(data)
        except ValueError:
            log.warning("%s frame %d: undecodable JPEG, skipped", row["key"], index)
            continue
        found = detector.detect(image)
        if not found:
            continue
        best = references.pick(image, found, row["character"]) if references else found[0]
        out.append(
            {
                "dataset": "meld",
                "split": row["split"],
                "id": f"{row['key']}_f{index}",
                "key": row["key"],
                "dialogue_id": row["dialogue_id"],
                "utterance_id": row["utterance_id"],
                "source": row["file"],
                "frame_index": index,
                "character": row["character"],
                "speaker": row["speaker"],
                "label": row["label"],
                "image": encode_jpeg(
                    face_crop(image, best, s.size, align=s.align, margin=s.margin), s.jpeg_quality
                ),
                "bbox": list(best.box),
                "score": float(best.score),
                "n_faces": len(found),
                "landmarks": best.landmark_list(),
            }
        )
    return out


def _clip_rows(path: str | Path, batch_size: int) -> Iterator[dict[str, Any]]:
    pf = pq.ParquetFile(path)
    cols = [
        "split",
        "dialogue_id",
        "utterance_id",
        "key",
        "file",
        "character",
        "speaker",
        "label",
        "frames",
    ]
    for batch in pf.iter_batches(batch_size=batch_size, columns=cols):
        yield from batch.to_pylist()


def faces_shard(
    clips_path: str | Path,
    out: str | Path,
    s: FaceSettings,
    batch_size: int = 16,
    references: References | None = None,
) -> pl.DataFrame:
    """Detect and crop faces for every clip of a clips shard; stream rows to ``out``.

    Returns per-clip counts (``key``, ``frames``, ``faces_found``) for logging.
    """
    detector = s.build_detector()
    n_clips = pq.ParquetFile(clips_path).metadata.num_rows
    counts: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    pbar = tqdm(
        total=n_clips,
        desc=f"faces {Path(out).name}",
        unit="clip",
        file=LogStream(log),
        mininterval=10,
        ascii=True,
    )
    with (
        atomic_path(out, suffix=".parquet") as tmp,
        pq.ParquetWriter(tmp, FACE_SHARD_SCHEMA, compression="zstd") as writer,
    ):
        for row in _clip_rows(clips_path, batch_size):
            rows = clip_faces(row, detector, s, references)
            counts.append(
                {
                    "split": row["split"],
                    "key": row["key"],
                    "frames": len(row["frames"] or []),
                    "faces_found": len(rows),
                }
            )
            pending.extend(rows)
            if len(pending) >= 256:
                writer.write_table(pa.Table.from_pylist(pending, schema=FACE_SHARD_SCHEMA))
                pending = []
            pbar.update(1)
        writer.write_table(pa.Table.from_pylist(pending, schema=FACE_SHARD_SCHEMA))
    pbar.close()
    return pl.DataFrame(
        counts,
        schema={"split": pl.String, "key": pl.String, "frames": pl.Int32, "faces_found": pl.Int32},
    )
