"""Face crops from the sampled MELD frames, and the speaker's face among them.

Tracks. Every sampled frame's faces (the configured detector's) are linked
into face tracks through the clip (``crossemotion.ingest.faces.tracks``:
box overlap and landmark distance frame to frame, gaps of up to two frames
bridged); each faces-shard row carries its face's ``track_id``.

Speaker (``selector``). ``track`` (the default): the speaker is one track for
the whole utterance, the one whose mouth moves, in time with the sound where
the clip has sound (the clips shard's ``audio_rms``), weighed with its size,
centrality and duration (``tracks.speaker_track``); a listener in a larger
close-up loses to a smaller face that talks. ``largest``: frame by frame, the
largest face, near-ties to the most central (``detect.rank_speaker_first``),
so one utterance may show different people. ``reference``: frame by frame,
the face most like the speaker's aligned IFEED faces where the geometric
first does not look like the speaker (``references``). One crop per frame at
most (the frames where the speaker's face was seen); ``n_faces`` records how
many faces the frame held. Each clip's choice (status, tracks, activity,
confidence, method) is one row of the speakers shard (``SPEAKER_SCHEMA``):
``no_face`` and ``one_frame`` clips say so there, and the run goes on.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from crossemotion.codec import decode_jpeg, encode_jpeg
from crossemotion.ingest.faces.align import face_crop, square_crop
from crossemotion.ingest.faces.detect import (
    DEFAULT_DETECTOR,
    WITH_LANDMARKS,
    Detection,
    FaceDetector,
    get_detector,
)
from crossemotion.ingest.faces.references import References
from crossemotion.ingest.faces.tracks import (
    SpeakerChoice,
    SpeakerWeights,
    Track,
    TrackSettings,
    speaker_of_clip,
    summarize,
    track_ids,
)
from crossemotion.ingest.ifeed.members import FACE_SHARD_SCHEMA, Aligner
from crossemotion.ingest.video.audio import AUDIO_NONE, AUDIO_OK
from crossemotion.ingest.video.decode import LogStream
from crossemotion.io import atomic_path, write_parquet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceSettings:
    detector: str = DEFAULT_DETECTOR
    size: int = 224
    margin: float = 0.2
    min_size: int = 40
    max_per_frame: int = 6
    jpeg_quality: int = 90
    # track: the face track that speaks (crossemotion.ingest.faces.tracks); largest:
    # frame by frame the geometric first; reference: frame by frame the face most
    # like the speaker's aligned IFEED faces (crossemotion.ingest.faces.references)
    selector: str = "track"
    # warp each face onto the five-landmark template (detectors with landmarks)
    align: bool = True
    # the learned detectors' score threshold
    score_threshold: float = 0.6
    # intra-op threads of the detector (the job's threads)
    threads: int = 1
    track_settings: TrackSettings = field(default_factory=TrackSettings)
    speaker_weights: SpeakerWeights = field(default_factory=SpeakerWeights)

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


__all__ = [
    "SPEAKER_SCHEMA",
    "ClipSpeaker",
    "FaceSettings",
    "clip_faces",
    "clip_speaker",
    "face_crop",
    "faces_shard",
    "square_crop",
]


# Per clip, how its speaker was chosen (the speakers shards, ``speakers_shard_path``).
# status: ok (a speaker face), no_face (no face in any sampled frame), one_frame
# (faces in one sampled frame only: no motion to measure, the choice is by size);
# method: audio+motion, motion (mouth motion without sound), geometry (no
# activity measurable: size, centrality, duration), single (one track), none.
TRACK_STRUCT = pa.struct(
    [
        ("track_id", pa.int32()),
        ("length", pa.int32()),
        ("mean_size", pa.float64()),
        ("centrality", pa.float64()),
        ("mean_score", pa.float64()),
        ("motion", pa.float64()),
        ("audio_corr", pa.float64()),
        ("score", pa.float64()),
    ]
)
SPEAKER_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("dialogue_id", pa.int32()),
        ("utterance_id", pa.int32()),
        ("key", pa.string()),
        ("character", pa.string()),
        ("speaker", pa.string()),
        ("selector", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("audio", pa.string()),
        ("audio_reason", pa.string()),
        ("n_frames", pa.int32()),
        ("n_tracks", pa.int32()),
        ("speaker_track", pa.int32()),
        ("confidence", pa.float64()),
        ("speaking", pa.float64()),
        ("motion", pa.float64()),
        ("audio_corr", pa.float64()),
        ("method", pa.string()),
        ("tracks", pa.list_(TRACK_STRUCT)),
    ]
)
SPEAKER_OK, NO_FACE, ONE_FRAME = "ok", "no_face", "one_frame"


@dataclass
class ClipSpeaker:
    """One clip's faces-shard rows (the speaker's face per frame) and its speakers row."""

    rows: list[dict[str, Any]]
    record: dict[str, Any]


def _decoded(row: dict[str, Any]) -> list[np.ndarray | None]:
    images: list[np.ndarray | None] = []
    for index, data in enumerate(row["frames"] or []):
        try:
            images.append(decode_jpeg(data))
        except ValueError:
            log.warning("%s frame %d: undecodable JPEG, skipped", row["key"], index)
            images.append(None)
    return images


def _method(choice: SpeakerChoice | None, tracks: list[Track]) -> str:
    if choice is None:
        return "none"
    if len(tracks) == 1:
        return "single"
    if not any(choice.speaking.values()) and not choice.used_audio:
        return "geometry"
    return "audio+motion" if choice.used_audio else "motion"


def _per_frame_pick(
    images: list[np.ndarray | None],
    found: list[list[Detection]],
    character: str | None,
    references: References | None,
) -> dict[int, int]:
    """frame -> detection index, chosen frame by frame (``largest`` / ``reference``)."""
    picks: dict[int, int] = {}
    for f, (image, faces) in enumerate(zip(images, found, strict=True)):
        if not faces or image is None:
            continue
        best = references.pick(image, faces, character) if references else faces[0]
        picks[f] = next(j for j, d in enumerate(faces) if d is best)
    return picks


def clip_speaker(
    row: dict[str, Any],
    detector: FaceDetector,
    s: FaceSettings,
    references: References | None = None,
) -> ClipSpeaker:
    """The speaker's face in every sampled frame of one clips-shard row, and how it was chosen.

    Every frame's faces are linked into tracks (``crossemotion.ingest.faces.tracks``).
    ``selector: track``: the track whose mouth moves (with the sound, where
    the row has ``audio_rms``) is the speaker in every frame it was seen in;
    ``largest`` / ``reference``: frame by frame, the geometric first face or
    the face most like the speaker's IFEED faces (``references``). Rows carry
    the chosen face's ``track_id`` either way.
    """
    images = _decoded(row)
    found = [detector.detect(image) if image is not None else [] for image in images]
    width = next((im.shape[1] for im in images if im is not None), 1)
    height = next((im.shape[0] for im in images if im is not None), 1)
    audio = row.get("audio_status") or AUDIO_NONE
    envelope = row.get("audio_rms") if audio == AUDIO_OK else None
    if envelope is not None and len(envelope) != len(images):
        envelope = None  # a clips shard from before the sound was kept per frame
    # mouth motion needs the frames: a track's patches are cut from them
    frames = [im if im is not None else np.zeros((height, width, 3), np.uint8) for im in images]
    clip = speaker_of_clip(found, frames, envelope, s.track_settings, s.speaker_weights)
    tracks, activity, choice = clip.tracks, clip.activity, clip.choice
    ids = track_ids(tracks, len(found))
    if s.selector == "track":
        picks = {} if choice is None else dict(zip(choice.track.frames, choice.track.detections,
                                                   strict=True))  # fmt: skip
    else:
        # the references decide only with selector: reference
        refs = references if s.selector == "reference" else None
        picks = _per_frame_pick(images, found, row.get("character"), refs)
    rows = []
    for f, j in sorted(picks.items()):
        image, best = images[f], found[f][j]
        assert image is not None
        rows.append(
            {
                "dataset": "meld",
                "split": row["split"],
                "id": f"{row['key']}_f{f}",
                "key": row["key"],
                "dialogue_id": row["dialogue_id"],
                "utterance_id": row["utterance_id"],
                "source": row["file"],
                "frame_index": f,
                "character": row["character"],
                "speaker": row["speaker"],
                "label": row["label"],
                "image": encode_jpeg(
                    face_crop(image, best, s.size, align=s.align, margin=s.margin), s.jpeg_quality
                ),
                "bbox": list(best.box),
                "score": float(best.score),
                "n_faces": len(found[f]),
                "landmarks": best.landmark_list(),
                "track_id": ids[f].get(j),
            }
        )
    # distinct frames: with ``exact: false`` one decoded frame may be picked for two times
    times = row.get("timestamps") or list(range(len(found)))
    seen = len({times[f] for f, faces in enumerate(found) if faces})
    if not tracks:
        status, reason = NO_FACE, f"no face found in the {len(images)} sampled frames"
    elif seen == 1:
        status, reason = ONE_FRAME, "faces in one sampled frame only: no mouth motion to measure"
    else:
        status, reason = SPEAKER_OK, None
    summaries = {t.track_id: summarize(t, width, height) for t in tracks}
    chosen = choice.track.track_id if choice is not None else None
    act = activity.get(chosen) if chosen is not None else None
    record = {
        "split": row["split"],
        "dialogue_id": row["dialogue_id"],
        "utterance_id": row["utterance_id"],
        "key": row["key"],
        "character": row.get("character"),
        "speaker": row.get("speaker"),
        "selector": s.selector,
        "status": status,
        "reason": reason,
        "audio": audio,
        "audio_reason": row.get("audio_reason"),
        "n_frames": len(images),
        "n_tracks": len(tracks),
        "speaker_track": chosen,
        "confidence": choice.confidence if choice is not None else None,
        "speaking": choice.speaking[chosen] if choice is not None and chosen is not None else None,
        "motion": act.motion if act is not None else None,
        "audio_corr": act.audio_corr if act is not None else None,
        "method": _method(choice, tracks),
        "tracks": [
            {
                "track_id": t.track_id,
                "length": summaries[t.track_id].length,
                "mean_size": summaries[t.track_id].mean_size,
                "centrality": summaries[t.track_id].centrality,
                "mean_score": summaries[t.track_id].mean_score,
                "motion": activity[t.track_id].motion,
                "audio_corr": activity[t.track_id].audio_corr,
                "score": choice.scores[t.track_id] if choice is not None else None,
            }
            for t in tracks
        ],
    }
    return ClipSpeaker(rows, record)


def clip_faces(
    row: dict[str, Any],
    detector: FaceDetector,
    s: FaceSettings,
    references: References | None = None,
) -> list[dict[str, Any]]:
    """Speaker face rows for one clips-shard row (one per frame with the speaker's face)."""
    return clip_speaker(row, detector, s, references).rows


_CLIP_COLUMNS = ("split", "dialogue_id", "utterance_id", "key", "file", "character", "speaker",
                 "label", "timestamps", "frames", "audio_rms", "audio_status",
                 "audio_reason")  # fmt: skip


def _clip_rows(path: str | Path, batch_size: int) -> Iterator[dict[str, Any]]:
    pf = pq.ParquetFile(path)
    # a clips shard written before the sound was kept has no audio columns
    cols = [c for c in _CLIP_COLUMNS if c in pf.schema_arrow.names]
    for batch in pf.iter_batches(batch_size=batch_size, columns=cols):
        yield from batch.to_pylist()


def faces_shard(
    clips_path: str | Path,
    out: str | Path,
    s: FaceSettings,
    batch_size: int = 16,
    references: References | None = None,
    speakers_out: str | Path | None = None,
) -> pl.DataFrame:
    """Detect, track and crop faces for every clip of a clips shard; stream rows to ``out``,
    and each clip's speaker choice to ``speakers_out`` (``SPEAKER_SCHEMA``) when given.

    Returns per-clip counts (``key``, ``frames``, ``faces_found``, ``status``) for logging.
    """
    detector = s.build_detector()
    n_clips = pq.ParquetFile(clips_path).metadata.num_rows
    counts: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
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
            found = clip_speaker(row, detector, s, references)
            counts.append(
                {
                    "split": row["split"],
                    "key": row["key"],
                    "frames": len(row["frames"] or []),
                    "faces_found": len(found.rows),
                    "status": found.record["status"],
                }
            )
            records.append(found.record)
            pending.extend(found.rows)
            if len(pending) >= 256:
                writer.write_table(pa.Table.from_pylist(pending, schema=FACE_SHARD_SCHEMA))
                pending = []
            pbar.update(1)
        writer.write_table(pa.Table.from_pylist(pending, schema=FACE_SHARD_SCHEMA))
        if speakers_out is not None:
            # one row per clip: small, written whole once the shard is done
            write_parquet(speakers_out, pa.Table.from_pylist(records, schema=SPEAKER_SCHEMA))
    pbar.close()
    return pl.DataFrame(
        counts,
        schema={"split": pl.String, "key": pl.String, "frames": pl.Int32,
                "faces_found": pl.Int32, "status": pl.String},
    )  # fmt: skip
