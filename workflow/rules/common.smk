import re
import sys
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import min_version, validate

min_version("9.0")

# Scripts import the library from src/ even when the package is not installed
# (e.g. inside a cluster job whose environment only has the dependencies).
SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)


validate(config, schema="../schemas/config.schema.yaml")

from crossemotion.layout import config_seeds, seed_of_subdir, seed_subdir

MELD_SPLITS = ["train", "dev", "test"]
IFEED_SPLITS = ["train", "test"]
VIDEO_MODELS = ["cnn_lstm", "c3d"]
FACE_MODELS = ["resnet50"]
MULTIMODAL_MODELS = ["text", "fusion"]
TEXT_ONLY_MODELS = ["text"]


def text_only():
    return bool(config["meld"].get("text_only", False))


def task():
    """emotion (7 classes, MELD and IFEED) or sentiment (MELD's 3, MELD only)."""
    return config.get("task", "emotion")


if task() != "emotion":
    _off = [
        f"{name}/{d}"
        for name, cfg in config["models"].items()
        if cfg.get("enabled", True)
        for d in cfg.get("datasets", ["meld"])
        if d != "meld"
    ]
    if _off or config.get("transfer", {}).get("enabled", False):
        logger.warning(
            f"task: {task()}: IFEED has no sentiment labels, so the IFEED runs "
            f"({', '.join(_off) or 'none'}) and the transfer grid are off"
        )


def demo_data():
    return bool(config.get("demo", config.get("synth", {}).get("enabled", False)))


def shard_ids(split):
    n = int(config["meld"]["shards"][split])
    return [f"{i:04d}" for i in range(n)]


def ifeed_shard_ids():
    return [f"{i:04d}" for i in range(int(config["ifeed"]["shards"]))]


def meld_shards(kind, split=None):
    """All shard files of one kind (clips, faces, text) for a split or all."""
    splits = MELD_SPLITS if split is None else [split]
    if kind == "text":
        return [f"results/shards/meld/text/{s}/part-0000.parquet" for s in splits]
    return [
        f"results/shards/meld/{kind}/{s}/part-{i}.parquet"
        for s in splits
        for i in shard_ids(s)
    ]


def ifeed_shards():
    return [
        f"results/shards/ifeed/faces/{s}/part-{i}.parquet"
        for s in IFEED_SPLITS
        for i in ifeed_shard_ids()
    ]


def align_shards():
    """Shards of the IFEED -> MELD alignment (ifeed.align.shards)."""
    n = int(config["ifeed"].get("align", {}).get("shards", 1))
    return [f"results/ifeed/alignment/part-{i:04d}.parquet" for i in range(n)]


def model_runs():
    """(model, dataset) pairs the config enables."""
    runs = []
    for name, cfg in config["models"].items():
        if not cfg.get("enabled", True):
            continue
        if text_only() and name not in TEXT_ONLY_MODELS:
            continue
        for dataset in cfg.get("datasets", ["meld"]):
            # text-only has no faces; IFEED has no sentiment labels
            if (text_only() or task() != "emotion") and dataset != "meld":
                continue
            runs.append((name, dataset))
    return runs


def model_dir(model, dataset):
    return f"results/models/{model}/{dataset}"


def seeds():
    """Seeds every training run is repeated with; the first writes the contract paths."""
    return config_seeds(config)


def seed_dirs():
    """Wildcard values of ``{seeddir}``: empty for the first seed, else its folder and a slash."""
    return [f"{d}/" if d else "" for d in (seed_subdir(s, seeds()) for s in seeds())]


def transfer_cells():
    """(source, target, mode) cells of the transfer grid."""
    tcfg = config.get("transfer", {})
    if text_only() or task() != "emotion" or not tcfg.get("enabled", False):
        return []
    modes = ["zero_shot"] + [f"finetune_{f:g}" for f in tcfg.get("fractions", [])]
    cells = []
    for source, target in (("ifeed", "meld"), ("meld", "ifeed")):
        for mode in modes:
            cells.append((source, target, mode))
    return cells


def final_targets():
    targets = ["results/meld/manifest.parquet"] if not text_only() else []
    targets += meld_shards("text")
    for model, dataset in model_runs():
        targets += [f"{model_dir(model, dataset)}/{d}metrics.json" for d in seed_dirs()]
    if not text_only():
        targets += [
            "results/ifeed/manifest.parquet",
            "results/ifeed/alignment.parquet",
            "results/tables/speaker_faces.csv",
        ]
        targets += [
            f"results/transfer/{s}_to_{t}/{m}/metrics.json"
            for s, t, m in transfer_cells()
        ]
    # tables and report in every mode, so a text-only run is reported too
    targets += [
        "results/tables/benchmark.csv",
        "results/tables/character_wise.csv",
        "results/tables/transfer.csv",
        "results/report.html",
    ]
    return targets


# ----------------------------------------------------------- acquire (acquire.smk)
# Archive paths: a configured local copy, else the download's path. Never a
# network call here: the DAG must build offline.
MELD_DOWNLOAD = "resources/meld/MELD.Raw.tar.gz"
ZENODO_API = config["ifeed"].get("zenodo_api") or "https://zenodo.org/api/records/"


def meld_archive():
    """The MELD archive to unpack: meld.archive when set, else the download."""
    return config["meld"].get("archive") or MELD_DOWNLOAD


MELD_ANNOTATION_DOWNLOAD = "resources/meld/annotations/{split}_sent_emo.csv"


def meld_annotation_urls():
    """Splits whose meld.annotations entry is a URL: {split: url}."""
    entries = config["meld"].get("annotations") or {}
    return {
        split: str(value)
        for split, value in entries.items()
        if value and str(value).startswith(("http://", "https://"))
    }


def meld_annotation_md5(split):
    return (config["meld"].get("annotations_md5") or {}).get(split)


def ifeed_pinned_files():
    return config["ifeed"].get("files") or []


def ifeed_record_listing():
    return f"resources/ifeed/zenodo_{config['ifeed']['record']}.json"


def ifeed_archive_paths():
    """Local archives, else the pinned downloads, else the record-mode listing."""
    archives = config["ifeed"].get("archives") or []
    if archives:
        return archives
    if ifeed_pinned_files():
        return [f"resources/ifeed/{f['name']}" for f in ifeed_pinned_files()]
    if config["ifeed"].get("record"):
        return [ifeed_record_listing()]
    raise ValueError(
        "IFEED has no source: set ifeed.archives to local zips, pin ifeed.files, "
        "or set ifeed.record to the Zenodo record id"
    )


def ifeed_remote(wildcards):
    for entry in ifeed_pinned_files():
        if entry["name"] == wildcards.name:
            return entry
    raise ValueError(f"{wildcards.name} is not listed under ifeed.files")
