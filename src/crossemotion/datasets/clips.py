"""Datasets over MELD clips shards: one item per clip.

Items are dicts of tensors: ``frames`` uint8 [T, 3, S, S] (normalised per
batch by ``crossemotion.datasets.collate.stack_collate``) and ``label``
(int64). Every dataset carries ``meta`` (polars, aligned with indices: id,
key, split, speaker, character, label), ``labels`` (int64 numpy) for class
weights and metrics, and ``classes`` (the task's class list, see
``crossemotion.labels.TASKS``; the config's ``task`` picks the label column,
see ``shards.task_labels``).

Each JPEG is decoded once: building the dataset decodes every frame of every
clip (a clip with an undecodable frame is left out, as it always was) and
keeps the sampled frames as the item's uint8 tensor in the decode cache, so
the epochs do not decode them again (only what the cache's budget could not
hold).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl
import torch
from torch import Tensor
from torch.utils.data import Dataset

from crossemotion.codec import decode_jpeg, to_uint8_chw
from crossemotion.datasets.shards import (
    augment_image,
    cache_for,
    cached_item,
    check_and_cache,
    classes_of,
    frame_indices,
    label_indices,
    meta_frame,
    read_shards,
    task_labels,
)
from crossemotion.datasets.speaker_crop import (
    clip_windows,
    crop_mode,
    crop_window,
    speaker_detections,
)
from crossemotion.ingest.faces.detect import Detection
from crossemotion.model_config import ClipConfig

# the speaker's box and five landmarks per sampled frame (crossemotion.datasets.speaker_crop)
FACE_COLUMNS = ["key", "frame_index", "bbox", "landmarks"]


class ClipDataset(Dataset):
    """One item per MELD clip: uint8 ``frames`` [T, 3, S, S] sampled evenly over the clip.

    Clips without frames, or with a frame that does not decode, are left out.
    """

    def __init__(
        self,
        frame: pl.DataFrame,
        cfg: ClipConfig,
        augment: bool = False,
        boxes: Mapping[str, Mapping[int, Detection]] | None = None,
    ) -> None:
        frame = frame.filter(pl.col("frames").list.len() > 0)
        self.crop_scale = cfg.crop_scale
        self.crop_align = cfg.crop_align
        self.t = cfg.frames
        self.size = cfg.size
        self.augment = augment
        self.cache = cache_for(cfg)
        frames: list[list[bytes]] = frame["frames"].to_list()
        # speaker-centred crops (crop: speaker): the speaker's faces per clip key
        keys = frame["key"].to_list()
        clip_boxes = [boxes.get(k, {}) for k in keys] if boxes else None

        def checked(row: int) -> Tensor:
            return self.build(frames[row], clip_boxes[row] if clip_boxes else None, True)

        ok = check_and_cache(len(frames), checked, self.cache, "frames")
        frame = frame.filter(pl.Series(ok, dtype=pl.Boolean))
        self.frames = [f for f, keep in zip(frames, ok, strict=True) if keep]
        self.boxes = (
            [b for b, keep in zip(clip_boxes, ok, strict=True) if keep] if clip_boxes else None
        )
        self.classes = classes_of(cfg)
        self.labels = label_indices(frame["label"].to_list(), self.classes)
        self.meta = meta_frame(frame, self.classes)

    def __len__(self) -> int:
        return len(self.frames)

    def build(
        self, jpegs: Sequence[bytes], boxes: Mapping[int, Detection] | None, every_frame: bool
    ) -> Tensor:
        """The clip's uint8 tensor; ``every_frame`` decodes the frames not sampled too
        (the check at build: a clip with any undecodable frame is left out)."""
        picks = frame_indices(len(jpegs), self.t)
        if every_frame:
            wanted = set(picks)
            decoded = {}
            for i, data in enumerate(jpegs):
                image = decode_jpeg(data)
                if i in wanted:
                    decoded[i] = image
            images = [decoded[i] for i in picks]
        else:
            images = [decode_jpeg(jpegs[i]) for i in picks]
        if boxes is not None:
            windows = clip_windows(boxes, len(jpegs), self.crop_scale, self.crop_align)
            images = [crop_window(img, windows[i]) for img, i in zip(images, picks, strict=True)]
        return torch.stack([to_uint8_chw(img, self.size) for img in images])

    def clip_uint8(self, index: int) -> Tensor:
        boxes = self.boxes[index] if self.boxes else None
        return cached_item(self.cache, index, lambda: self.build(self.frames[index], boxes, False))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        clip = self.clip_uint8(index)
        if self.augment:
            # one flip/shift for the whole clip keeps motion consistent
            clip = augment_image(clip)
        return {"frames": clip, "label": torch.tensor(self.labels[index])}


def clip_datasets(
    cfg: ClipConfig,
    paths: Mapping[str, Sequence[str | Path]],
    faces: Mapping[str, Sequence[str | Path]] | None = None,
) -> dict[str, ClipDataset]:
    """Clip datasets per split; ``crop: speaker`` also needs the MELD faces shards."""
    speaker = crop_mode(cfg) == "speaker"
    if speaker and not (faces and all(faces.get(s) for s in ("train", "dev", "test"))):
        raise ValueError("crop: speaker needs the MELD faces shards of every split")
    out = {}
    for split in ("train", "dev", "test"):
        frame = task_labels(read_shards(paths[split]), cfg.task)
        boxes = None
        if speaker and faces:
            boxes = speaker_detections(
                pl.concat([pl.read_parquet(p, columns=FACE_COLUMNS) for p in faces[split]])
            )
        out[split] = ClipDataset(frame, cfg, augment=split == "train" and cfg.augment, boxes=boxes)
    return out
