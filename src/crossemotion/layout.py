"""Where a run's files live under ``results/``, shared by the workflow and the library.

Shards: ``results/shards/{dataset}/{kind}/{split}/part-NNNN.parquet``
(contract). Training runs: ``results/models/{model}/{dataset}/`` holding
``TRAIN_FILES``; transfer cells: ``results/transfer/{source}_to_{target}/{mode}/``.
A rule hands a job its shards as named inputs (``input_name(kind, split)``)
and the job reads them back by name (``shard_inputs``), so no path is parsed.

Seeds: the first seed of ``seeds`` (or the single ``seed``) writes the
contract paths ``results/models/{model}/{dataset}/`` and
``results/transfer/{source}_to_{target}/{mode}/``; every further seed S writes
a ``seed{S}/`` folder inside them (``results/models/{model}/{dataset}/seed{S}/``,
``results/transfer/{source}_to_{target}/{mode}/seed{S}/``). The transfer cell
of seed S fine-tunes the source model trained with seed S. So a one-seed
config keeps today's layout, and adding seeds never moves or retrains the first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DEFAULT_SEED = 13
SEED_DIR = re.compile(r"^seed(\d+)$")

RESULTS = "results"
MELD_SPLITS = ("train", "dev", "test")
IFEED_SPLITS = ("train", "test")
SHARD_KINDS = ("clips", "faces", "text")
# the files of a run directory
CHECKPOINT = "model.pt"
METRICS = "metrics.json"
PREDICTIONS = "predictions.parquet"
TRAIN_LOG = "train_log.csv"
# what a training job writes into its run directory; metrics.json marks it complete
TRAIN_FILES = (CHECKPOINT, METRICS, PREDICTIONS, TRAIN_LOG)
TRANSFER_FILES = (METRICS, PREDICTIONS, TRAIN_LOG)
# an ensemble's members (``models.{m}.ensemble``) are runs inside its run
# directory, member0 being the section itself: results/models/{m}/{d}/[seed{S}/]members/member{k}/
MEMBERS_DIR = "members"


def member_subdir(index: int) -> str:
    """The folder of an ensemble's member ``index``, relative to the ensemble's run."""
    return f"{MEMBERS_DIR}/member{int(index)}"


@dataclass(frozen=True)
class ShardInputs:
    """Shard files a training job reads, by split (train/dev/test)."""

    clips: Mapping[str, list[Path]]
    faces: Mapping[str, list[Path]]
    text: Mapping[str, list[Path]]


def shard_name(shard: int | str) -> str:
    """``part-0003.parquet`` for shard 3 (a str is a wildcard or an id already padded)."""
    return f"part-{shard:04d}.parquet" if isinstance(shard, int) else f"part-{shard}.parquet"


def shard_dir(dataset: str, kind: str, split: str | None = None, root: str | Path = RESULTS) -> str:
    base = f"{root}/shards/{dataset}/{kind}"
    return f"{base}/{split}" if split else base


def shard_path(
    dataset: str, kind: str, split: str, shard: int | str, root: str | Path = RESULTS
) -> str:
    return f"{shard_dir(dataset, kind, split, root)}/{shard_name(shard)}"


def input_name(kind: str, split: str) -> str:
    """Name of a rule's input list holding the ``kind`` shards of ``split``."""
    return f"{kind}_{split}"


class NamedInputs(Protocol):
    """A rule's named inputs: Snakemake's ``input`` object, or a plain dict."""

    def get(self, key: str, default: Any = None, /) -> Any: ...


def shard_inputs(named: NamedInputs) -> ShardInputs:
    """Group a job's named inputs (``input_name(kind, split)``) into ``ShardInputs``;
    names of other inputs are ignored."""
    kinds: dict[str, dict[str, list[Path]]] = {kind: {} for kind in SHARD_KINDS}
    for kind in SHARD_KINDS:
        for split in MELD_SPLITS:
            paths = named.get(input_name(kind, split))
            if paths is not None:
                kinds[kind][split] = sorted(Path(p) for p in _as_list(paths))
    return ShardInputs(clips=kinds["clips"], faces=kinds["faces"], text=kinds["text"])


def _as_list(paths: Iterable[str | Path] | str | Path) -> list[str | Path]:
    # Snakemake hands a one-file named input as a plain string
    return [paths] if isinstance(paths, str | Path) else list(paths)


def find_shards(
    dataset: str, kinds: Iterable[str] = SHARD_KINDS, root: str | Path = RESULTS
) -> ShardInputs:
    """The shards present under ``root`` (outside the workflow: benchmarks, notebooks)."""
    named = {
        input_name(kind, split): sorted(
            Path(shard_dir(dataset, kind, split, root)).glob("part-*.parquet")
        )
        for kind in kinds
        for split in MELD_SPLITS
    }
    return shard_inputs({k: v for k, v in named.items() if v})


def config_seeds(config: Mapping[str, Any]) -> list[int]:
    """The seeds a config trains: ``seeds`` when set, else ``[seed]``; no duplicates."""
    # a config the workflow validated has ``seed`` (the schema's default, DEFAULT_SEED);
    # a report's recorded config may not
    if config.get("seeds"):
        seeds = list(config["seeds"])
    elif "seed" in config:
        seeds = [config["seed"]]
    else:
        seeds = [DEFAULT_SEED]
    out = [int(s) for s in dict.fromkeys(seeds)]
    if len(out) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    return out


def seed_subdir(seed: int, seeds: Sequence[int]) -> str:
    """'' for the primary (first) seed, else 'seed{S}'."""
    return "" if int(seed) == int(seeds[0]) else f"seed{int(seed)}"


def seed_of_subdir(subdir: str, seeds: Sequence[int]) -> int:
    """Inverse of :func:`seed_subdir` ('' or '/seed17' or 'seed17')."""
    name = subdir.strip("/")
    if not name:
        return int(seeds[0])
    match = SEED_DIR.match(name)
    if not match:
        raise ValueError(f"not a seed folder: {subdir!r}")
    return int(match.group(1))


def model_dir(model: str, dataset: str, seed_dir: str = "", root: str | Path = RESULTS) -> Path:
    base = Path(root) / "models" / model / dataset
    return base / seed_dir if seed_dir else base


def transfer_dir(
    source: str, target: str, mode: str, seed_dir: str = "", root: str | Path = RESULTS
) -> str:
    """A transfer cell's folder; ``seed_dir`` as for :func:`model_dir` ('' or 'seed{S}')."""
    base = f"{root}/transfer/{source}_to_{target}/{mode}"
    return f"{base}/{seed_dir}" if seed_dir else base
