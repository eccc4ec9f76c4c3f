"""Cross-dataset transfer: a face model trained on one dataset, scored on the other.

One cell = (source, target, mode). ``zero_shot`` evaluates the source's
checkpoint on the target's dev/test as is; ``finetune_{f}`` starts from it and
trains ``transfer.epochs`` epochs on a deterministic, stratified fraction ``f``
of the target's training faces (whole source-key groups, see
``select_fraction``), selecting the epoch on the target's dev split (IFEED has
none: the framework's carve-out of Training is used, so the dev images equal
the target-only model's).

Levels: MELD targets are scored per utterance (the faces of an utterance are
averaged by the runner's scorer, ``crossemotion.evaluation.scoring``;
utterances without a face get the class prior of the data the model last
trained on) and per face; IFEED per image. Both datasets use the canonical 7
classes, so labels need no mapping; classes missing from the source's
training data or the target's train/test are listed in metrics.json and macro
F1 averages over the classes present in the evaluated labels
(``macro_f1_labels``).

Leakage (IFEED's images are frames of MELD's clips): with ``exclude_overlap``
no evaluated item shares a MELD utterance with the data the model trained on.
Which utterance an IFEED image comes from is decided by its content
(``results/ifeed/alignment.parquet``); images that do not align follow
``transfer.unaligned`` (``crossemotion.ingest.ifeed.leakage``, which turns both into
``results/ifeed/leakage.parquet``):
- target IFEED, source MELD: IFEED dev/test images linked to MELD train are
  dropped;
- target MELD, source IFEED: MELD dev/test utterances (all their faces)
  linked to an IFEED Training image are dropped.
The same items leave the target-only reference row of the transfer table, so
every row of one target is scored on the same items.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from sklearn.metrics import f1_score

from crossemotion import checkpoint
from crossemotion.config import ConfigError, config_hash, property_default
from crossemotion.datasets.faces import cap_faces_per_key, face_splits
from crossemotion.datasets.shards import (
    label_indices,
    read_shards,
    stratified_group_split,
)
from crossemotion.device import resolve_device, seed_everything
from crossemotion.evaluation.metrics import classification_metrics
from crossemotion.evaluation.scoring import (
    EVAL_SPLITS,
    Scorer,
    prediction_frame,
    utterance_meta,
    write_run,
)
from crossemotion.ingest.ifeed.leakage import LINK_SCHEMA, excluded_items
from crossemotion.ingest.ifeed.leakage import RULES as LEAKAGE_RULES
from crossemotion.labels import EMOTIONS, normalize_label
from crossemotion.models.encoders import architecture_only
from crossemotion.models.registry import ModelSpec, get_spec
from crossemotion.training.loop import FitResult, TrainConfig, fit, predict_probs
from crossemotion.training.settings import JobSettings

log = logging.getLogger(__name__)

DATASETS = ("ifeed", "meld")
MODE_RE = re.compile(r"^(?:zero_shot|finetune_(?P<fraction>[0-9]*\.?[0-9]+(?:e-?[0-9]+)?))$")


@dataclass(frozen=True)
class Cell:
    source: str
    target: str
    mode: str

    def __post_init__(self) -> None:
        if self.source not in DATASETS or self.target not in DATASETS:
            raise ValueError(f"transfer datasets must be among {DATASETS}: {self}")
        if self.source == self.target:
            raise ValueError(f"transfer needs two different datasets: {self}")
        parse_mode(self.mode)

    @property
    def fraction(self) -> float | None:
        return parse_mode(self.mode)

    @property
    def primary_level(self) -> str:
        return "utterance" if self.target == "meld" else "image"


@dataclass(frozen=True, kw_only=True)
class TransferSettings:
    """The config's ``transfer`` section, typed; every default of its keys is here
    (``unaligned``'s is the schema's)."""

    enabled: bool = False
    # the face model moved between the datasets
    model: str = "resnet50"
    fractions: tuple[float, ...] = ()
    # leave out evaluated items that share a MELD utterance with the training data
    exclude_overlap: bool = True
    unaligned: str = property_default("transfer", "unaligned")
    # fine-tuning epochs
    epochs: int = 4
    # fine-tuning learning rate; None: the model's
    lr: float | None = None

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> TransferSettings:
        """The typed ``transfer`` section; a key it does not know is an error naming it,
        ``None`` for a key whose default is not ``None`` means the default."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - set(fields))
        if unknown:
            raise ConfigError(
                f"transfer has no key {', '.join(map(repr, unknown))}; "
                f"known keys: {', '.join(sorted(fields))}"
            )
        values = {
            k: tuple(v) if isinstance(v, list) else v
            for k, v in section.items()
            if v is not None or fields[k].default is None
        }
        return cls(**values)

    def record(self) -> dict[str, Any]:
        """As metrics.json records it (lists, not tuples)."""
        return {**dataclasses.asdict(self), "fractions": list(self.fractions)}


def parse_mode(mode: str) -> float | None:
    """``zero_shot`` -> None; ``finetune_0.1`` -> 0.1 (fraction in (0, 1])."""
    m = MODE_RE.match(mode)
    if not m:
        raise ValueError(f"unknown transfer mode {mode!r} (zero_shot or finetune_<fraction>)")
    if m["fraction"] is None:
        return None
    fraction = float(m["fraction"])
    if not 0 < fraction <= 1:
        raise ValueError(f"fine-tune fraction must be in (0, 1], got {mode!r}")
    return fraction


def select_fraction(frame: pl.DataFrame, fraction: float, seed: int) -> pl.DataFrame:
    """Deterministic stratified share of ``frame`` by source-key groups (1 = all of it)."""
    if fraction >= 1:
        return frame
    _, chosen = stratified_group_split(frame, fraction, seed=seed)
    return chosen


# ------------------------------------------------------------------ leakage


def read_leakage(path: str | Path | None) -> pl.DataFrame:
    """The leak links (crossemotion.ingest.ifeed.leakage); an empty table without a path."""
    if path is None:
        return pl.DataFrame(schema=LINK_SCHEMA)
    table = pl.read_parquet(path)
    missing = set(LINK_SCHEMA) - set(table.columns)
    if missing:
        raise ValueError(f"{path}: leak links lack columns {sorted(missing)}")
    return table


def drop_items(
    frame: pl.DataFrame | None, items: set[str], column: str
) -> tuple[pl.DataFrame | None, int]:
    """``frame`` without the rows whose ``column`` is in ``items`` and how many went."""
    if frame is None or not items:
        return frame, 0
    kept = frame.filter(~pl.col(column).is_in(sorted(items)).fill_null(False))
    return kept, frame.height - kept.height


# ------------------------------------------------------------------ data


@dataclass
class TargetData:
    """The target's faces per split (train/dev/test) and MELD utterance lists."""

    faces: dict[str, pl.DataFrame]
    utterances: dict[str, pl.DataFrame | None]
    excluded: dict[str, dict[str, int]]


def load_target(
    target: str,
    faces: Mapping[str, Sequence[str | Path]],
    text: Mapping[str, Sequence[str | Path]],
    seed: int,
    dev_fraction: float,
    leaked: Mapping[str, set[str]],
) -> TargetData:
    frames = face_splits(faces, seed, dev_fraction)
    utterances: dict[str, pl.DataFrame | None] = {}
    for split in ("train", *EVAL_SPLITS):
        utterances[split] = utterance_meta(text.get(split) if target == "meld" else None)
    excluded: dict[str, dict[str, int]] = {}
    # IFEED items are images (the faces shard's id is the archive member), MELD's utterances
    column = "key" if target == "meld" else "id"
    for split in EVAL_SPLITS:
        items = leaked.get(split, set())
        before = frames[split]
        frames[split], n_faces = drop_items(before, items, column)
        utterances[split], n_utts = drop_items(utterances[split], items, column)
        if utterances[split] is None:
            # no utterance list: the utterances are the keys that have faces
            n_utts = len(set(before[column].drop_nulls().to_list()) & items)
        excluded[split] = {"faces": n_faces}
        if target == "meld":
            excluded[split]["utterances"] = n_utts
    return TargetData(frames, utterances, excluded)


def source_train_labels(
    source: str, paths: Sequence[str | Path], seed: int, dev_fraction: float
) -> np.ndarray:
    """Labels the source model trained on (IFEED: minus the framework's dev carve-out)."""
    frame = read_shards(paths, columns=["id", "key", "label"])
    if source == "ifeed":
        frame, _ = stratified_group_split(frame, dev_fraction, seed=seed)
    return label_indices(frame["label"].to_list())


def load_source(
    path: str | Path, seed: int
) -> tuple[ModelSpec, torch.nn.Module, dict[str, Any], Any]:
    """The source's spec, model with its weights, config section (as recorded) and the
    typed config of that section for ``seed``."""
    ckpt = checkpoint.load(path)
    labels = [normalize_label(str(x)) for x in ckpt.get("labels", EMOTIONS)]
    if labels != list(EMOTIONS):
        raise ValueError(
            f"{path}: checkpoint classes {labels} are not the canonical {list(EMOTIONS)}"
        )
    spec = get_spec(ckpt["model"])
    section = dict(ckpt["config"])
    cfg = spec.configure(section, seed=seed)
    with architecture_only():
        model = spec.build(cfg, len(EMOTIONS))
    model.load_state_dict(ckpt["state_dict"])
    return spec, model, section, cfg


# ------------------------------------------------------------------ scoring


def present_classes(labels: np.ndarray) -> list[int]:
    return sorted({int(x) for x in np.asarray(labels).tolist()})


def cell_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """The models' metric dict, with macro F1 over the classes present in ``labels``."""
    preds = probs.argmax(1) if len(probs) else np.zeros(0, dtype=np.int64)
    metrics = classification_metrics(labels, preds)
    present = present_classes(labels)
    metrics["macro_f1_all"] = metrics["macro_f1"]
    if present:
        metrics["macro_f1"] = float(
            f1_score(labels, preds, labels=present, average="macro", zero_division=0)
        )
    metrics["macro_f1_labels"] = [EMOTIONS[i] for i in present]
    return metrics


def absent(labels: np.ndarray) -> list[str]:
    have = set(present_classes(labels))
    return [name for i, name in enumerate(EMOTIONS) if i not in have]


# ------------------------------------------------------------------ the job


@dataclass(frozen=True)
class TransferInputs:
    checkpoint: Path
    source_train: list[Path]
    faces: dict[str, list[Path]]
    text: dict[str, list[Path]]
    leakage: Path | None


def run_transfer(
    cell: Cell,
    inputs: TransferInputs,
    transfer: TransferSettings,
    job: JobSettings,
    out_dir: str | Path,
    *,
    progress: bool | None = None,
    save_model: str | Path | None = None,
) -> dict[str, Any]:
    """Run one transfer cell; write metrics.json, predictions.parquet, train_log.csv.

    ``job`` gives the seed, device and threads (default 1: the source model's
    config is the checkpoint's, not this job's); ``save_model``: also write the
    (fine-tuned) weights there, as a model.pt.
    """
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    seed = job.seed
    torch.set_num_threads(job.threads or 1)
    device = resolve_device(job.device)
    seed_everything(seed)
    spec, model, model_cfg, cfg = load_source(inputs.checkpoint, seed)
    if spec.datasets_from_tables is None:
        raise ValueError(
            f"transfer needs a model that builds datasets from face rows; {spec.name!r} does not"
        )
    dev_fraction = cfg.dev_fraction
    exclude = transfer.exclude_overlap
    if exclude and inputs.leakage is None:
        raise ValueError("exclude_overlap is on but no leak links (leakage.parquet) were given")
    links = read_leakage(inputs.leakage) if exclude else read_leakage(None)
    leaked = excluded_items(links, cell.source, cell.target) if exclude else {}
    data = load_target(cell.target, inputs.faces, inputs.text, seed, dev_fraction, leaked)
    data.faces = {
        split: cap_faces_per_key(f, cfg.faces_per_utterance) for split, f in data.faces.items()
    }
    src_labels = source_train_labels(cell.source, inputs.source_train, seed, dev_fraction)

    train_frame = data.faces["train"]
    if cell.fraction is not None:
        train_frame = select_fraction(train_frame, cell.fraction, seed)
    datasets = spec.datasets_from_tables(
        cfg, {"train": train_frame, **{s: data.faces[s] for s in EVAL_SPLITS}}
    )
    for split in EVAL_SPLITS:
        if len(datasets[split]) == 0:
            raise ValueError(f"{cell}: the target's {split} split has no faces left")
    scorer = Scorer(
        datasets,
        aggregate=cell.target == "meld",
        primary=cell.primary_level,
        utterances=data.utterances,
    )
    # prior for MELD utterances without a face: the labels the model last trained on
    scorer.set_prior(src_labels if cell.fraction is None else datasets["train"].labels)
    tcfg = TrainConfig.of(cfg.replace(**_finetune_overrides(transfer)))
    result = None
    if cell.fraction is not None:
        if len(datasets["train"]) == 0:
            raise ValueError(f"{cell}: no target training faces to fine-tune on")
        key = config_hash(
            {"cell": [cell.source, cell.target, cell.mode], "transfer": transfer.record(),
             "model": model_cfg, "seed": seed, "device": device.type,
             "n": [len(datasets[s]) for s in ("train", *EVAL_SPLITS)]}
        )  # fmt: skip
        result = fit(
            model, datasets["train"], datasets["dev"], tcfg, collate=spec.collate,
            device=device, state_dir=out_dir / ".resume", config_key=key,
            dev_score=scorer.dev_score if cell.target == "meld" else None, progress=progress,
            progress_seconds=job.progress_seconds,
        )  # fmt: skip
        model.load_state_dict(result.best_state)
    model.to(device)
    metrics, predictions = evaluate_cell(cell, model, spec, scorer, tcfg.batch_size, device)
    metrics.update(
        _describe(cell, data, datasets, src_labels, transfer, model_cfg, result, exclude)
    )
    metrics["seconds"] = round(time.perf_counter() - t0, 3)
    if save_model is not None:
        # the source's payload as stored (``raw``: no local encoder folder in its config)
        source = checkpoint.load(inputs.checkpoint, raw=True)
        checkpoint.save(
            save_model,
            {**source, "state_dict": checkpoint.cpu_state_dict(model),
             "transfer": {"source": cell.source, "target": cell.target, "mode": cell.mode}},
        )  # fmt: skip
    write_run(out_dir, metrics, predictions, result.log if result is not None else [])
    checkpoint.clear_resume(out_dir / ".resume")
    log.info(
        "%s -> %s %s: test acc %.4f wF1 %.4f (%s level, n %d, %d excluded for leakage)",
        cell.source, cell.target, cell.mode, metrics["test"]["accuracy"] or 0.0,
        metrics["test"]["weighted_f1"] or 0.0, cell.primary_level, metrics["test"]["n"],
        metrics["n_excluded"],
    )  # fmt: skip
    return metrics


def _finetune_overrides(transfer: TransferSettings) -> dict[str, Any]:
    out: dict[str, Any] = {"epochs": transfer.epochs}
    # fine-tuning often wants a smaller step than training from scratch
    if transfer.lr is not None:
        out["lr"] = transfer.lr
    return out


def evaluate_cell(
    cell: Cell,
    model: torch.nn.Module,
    spec: ModelSpec,
    scorer: Scorer,
    batch_size: int,
    device: torch.device,
) -> tuple[dict[str, Any], pl.DataFrame]:
    metrics: dict[str, Any] = {}
    levels: dict[str, dict[str, Any]] = {split: {} for split in EVAL_SPLITS}
    frames = []
    scored = scorer.score(lambda ds: predict_probs(model, ds, spec.collate, batch_size, device))
    for split, by_level in scored.items():
        for level, (meta, p, labels) in by_level.items():
            scores = cell_metrics(labels, p)
            if level == cell.primary_level:
                metrics[split] = scores
            levels[split][level] = scores
            frames.append(
                prediction_frame(meta.select(_META), p).with_columns(pl.lit(level).alias("level"))
            )
    metrics["levels"] = levels["test"]
    metrics["dev_levels"] = levels["dev"]
    return metrics, pl.concat(frames, how="vertical_relaxed")


_META = ["id", "key", "split", "speaker", "character", "label"]


def _describe(
    cell: Cell,
    data: TargetData,
    datasets: Mapping[str, Any],
    src_labels: np.ndarray,
    transfer: TransferSettings,
    model_cfg: Mapping[str, Any],
    result: FitResult | None,
    exclude: bool,
) -> dict[str, Any]:
    unit = "utterances" if cell.target == "meld" else "faces"
    test_labels = label_indices(datasets["test"].meta["label"].to_list())
    if cell.target == "meld" and data.utterances.get("test") is not None:
        test_labels = label_indices(data.utterances["test"]["label"].to_list())  # type: ignore[index]
    out: dict[str, Any] = {
        "source": cell.source,
        "target": cell.target,
        "mode": cell.mode,
        "fraction": cell.fraction,
        "model": transfer.model,
        "level": cell.primary_level,
        "absent_classes": {
            "source_train": absent(src_labels),
            "target_train": absent(datasets["train"].labels),
            "target_test": absent(test_labels),
        },
        "macro_f1_labels": [n for n in EMOTIONS if n not in absent(test_labels)],
        "macro_f1_note": "macro F1 averages over the classes present in the evaluated "
        "labels (macro_f1_labels); macro_f1_all is sklearn's (labels or predictions)",
        "exclude_overlap": exclude,
        "unaligned": transfer.unaligned if exclude else None,
        # test items left out at the primary level (utterances / images)
        "n_excluded": data.excluded["test"].get(unit, 0),
        "excluded": data.excluded,
        "leakage_rule": LEAKAGE_RULES[(cell.source, cell.target)] if exclude else None,
        "n_finetune": len(datasets["train"]) if cell.fraction is not None else 0,
        "n_target_train": data.faces["train"].height,
        "config": {"transfer": transfer.record(), "model": dict(model_cfg)},
    }
    if result is not None:
        out["train"] = {
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "best_dev_score": result.best_score,
            "seconds": round(result.seconds, 3),
        }
    return out
