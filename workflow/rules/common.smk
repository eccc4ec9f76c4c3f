# Helpers of every *.smk file, in sections (set-up, config, paths and targets,
# then one section per stage). The other files define rules only, so they may
# be included in any order after this one.

# ------------------------------------------------------------------- set-up
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import min_version, validate

min_version("9.0")

# Scripts import the library from src/ even when the package is not installed
# (e.g. inside a cluster job whose environment only has the dependencies).
SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from crossemotion import layout
from crossemotion.config import ConfigError, ensemble_members, schema_path
from crossemotion.layout import (
    IFEED_SPLITS,
    MELD_SPLITS,
    TRAIN_FILES,
    config_seeds,
    seed_of_subdir,
    seed_subdir,
)
from crossemotion.model_config import model_default
from crossemotion.models.registry import MODELS

validate(config, schema=str(schema_path()))


# ------------------------------------------------------------------- config
def text_only():
    return bool(config["meld"].get("text_only", False))


def task():
    """emotion (7 classes, MELD and IFEED) or sentiment (MELD's 3, MELD only)."""
    return config.get("task", "emotion")


def model_cfg(model):
    return config["models"].get(model, {})


def model_setting(model, key):
    """A model key as its job reads it: the config's value, else the typed config's default."""
    value = model_cfg(model).get(key)
    return model_default(key) if value is None else value


def _ensembles():
    try:
        return {
            name: ensemble_members(name, model_cfg(name)) for name in config["models"]
        }
    except ConfigError as err:
        raise WorkflowError(str(err)) from None


# model -> the sections of its ensemble's members ([] for a single model)
ENSEMBLES = _ensembles()


if task() != "emotion":
    _off = [
        f"{name}/{d}"
        for name in config["models"]
        if model_setting(name, "enabled")
        for d in model_setting(name, "datasets")
        if d != "meld"
    ]
    if _off or config.get("transfer", {}).get("enabled", False):
        logger.warning(
            f"task: {task()}: IFEED has no sentiment labels, so the IFEED runs "
            f"({', '.join(_off) or 'none'}) and the transfer grid are off"
        )


def demo_data():
    return bool(config.get("demo", config.get("synth", {}).get("enabled", False)))


def reads_text_only(model):
    """A model a text-only run (no video, no faces) can train."""
    return MODELS[model].inputs == ("text",)


def model_runs():
    """(model, dataset) pairs the config enables."""
    runs = []
    for name in config["models"]:
        if not model_setting(name, "enabled"):
            continue
        if text_only() and not reads_text_only(name):
            continue
        for dataset in model_setting(name, "datasets"):
            # text-only has no faces; IFEED has no sentiment labels
            if (text_only() or task() != "emotion") and dataset != "meld":
                continue
            runs.append((name, dataset))
    return runs


def seeds():
    """Seeds every training run is repeated with; the first writes the contract paths."""
    return config_seeds(config)


def seed_dirs():
    """Wildcard values of ``{seeddir}``: empty for the first seed, else its folder and a slash."""
    return [f"{d}/" if d else "" for d in (seed_subdir(s, seeds()) for s in seeds())]


def job_seed(wildcards):
    """The seed of a training or transfer job, from its ``{seeddir}`` wildcard."""
    return seed_of_subdir(wildcards.seeddir, seeds())


def transfer_cfg():
    return config.get("transfer", {})


def transfer_model():
    """The face model the transfer grid moves between datasets."""
    return transfer_cfg().get("model", "resnet50")


def transfer_cells():
    """(source, target, mode) cells of the transfer grid."""
    if text_only() or task() != "emotion" or not transfer_cfg().get("enabled", False):
        return []
    modes = ["zero_shot"] + [
        f"finetune_{f:g}" for f in transfer_cfg().get("fractions", [])
    ]
    cells = []
    for source, target in (("ifeed", "meld"), ("meld", "ifeed")):
        for mode in modes:
            cells.append((source, target, mode))
    return cells


# -------------------------------------------------------------------- paths
# Every path comes from crossemotion.layout, which the library uses too.
def shard_ids(split):
    n = int(config["meld"]["shards"][split])
    return [f"{i:04d}" for i in range(n)]


def ifeed_shard_ids():
    return [f"{i:04d}" for i in range(int(config["ifeed"]["shards"]))]


def meld_shards(kind, split=None):
    """All shard files of one kind (clips, faces, text) for a split or all."""
    splits = MELD_SPLITS if split is None else [split]
    if kind == "text":
        return [layout.shard_path("meld", "text", s, 0) for s in splits]
    return [layout.shard_path("meld", kind, s, i) for s in splits for i in shard_ids(s)]


def ifeed_shards(split=None):
    splits = IFEED_SPLITS if split is None else [split]
    return [
        layout.shard_path("ifeed", "faces", s, i)
        for s in splits
        for i in ifeed_shard_ids()
    ]


def named_shards(dataset, kinds):
    """Named inputs ``{kind}_{split}`` (crossemotion.layout.input_name), read back by name."""
    if dataset == "ifeed" and set(kinds) != {"faces"}:
        raise ValueError(f"IFEED has faces shards only, not {sorted(kinds)}")
    named = {}
    for kind in kinds:
        for split in MELD_SPLITS if dataset == "meld" else IFEED_SPLITS:
            files = (
                meld_shards(kind, split) if dataset == "meld" else ifeed_shards(split)
            )
            if files:
                named[layout.input_name(kind, split)] = files
    return named


def align_shards():
    """Shards of the IFEED -> MELD alignment (ifeed.align.shards)."""
    n = int(config["ifeed"].get("align", {}).get("shards", 1))
    return [f"results/ifeed/alignment/{layout.shard_name(i)}" for i in range(n)]


def meld_status_shards():
    return [
        f"results/meld/status/{s}/{layout.shard_name(i)}"
        for s in MELD_SPLITS
        for i in shard_ids(s)
    ]


def model_dir(model, dataset):
    return str(layout.model_dir(model, dataset))


def run_files(names):
    files = []
    for model, dataset in model_runs():
        files += [
            f"{model_dir(model, dataset)}/{d}{name}"
            for d in seed_dirs()
            for name in names
        ]
    return files


def transfer_targets():
    return sorted({t for _s, t, _m in transfer_cells()})


def transfer_files(names, with_target_only=True):
    """Every seed's files of the transfer cells (and of the target-only runs)."""
    files = [
        f"{layout.transfer_dir(s, t, m)}/{d}{name}"
        for s, t, m in transfer_cells()
        for d in seed_dirs()
        for name in names
    ]
    if with_target_only:
        files += [
            f"{model_dir(transfer_model(), t)}/{d}{name}"
            for t in transfer_targets()
            if (transfer_model(), t) in model_runs()
            for d in seed_dirs()
            for name in names
        ]
    return list(dict.fromkeys(files))


# ------------------------------------------------------------------ targets
def final_targets():
    targets = ["results/meld/manifest.parquet"] if not text_only() else []
    targets += meld_shards("text")
    for model, dataset in model_runs():
        targets += [
            f"{model_dir(model, dataset)}/{d}{layout.METRICS}" for d in seed_dirs()
        ]
    if not text_only():
        targets += [
            "results/ifeed/manifest.parquet",
            "results/ifeed/alignment.parquet",
            "results/tables/speaker_faces.csv",
        ]
        targets += transfer_files([layout.METRICS], with_target_only=False)
    # tables and report in every mode, so a text-only run is reported too
    targets += [
        "results/tables/benchmark.csv",
        "results/tables/character_wise.csv",
        "results/tables/transfer.csv",
        "results/report.html",
    ]
    return targets


# ---------------------------------------------------------- acquire.smk
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


# ----------------------------------------------------------- ingest.smk
def meld_index_inputs(wildcards):
    """The unpacked tree (unless text-only) and the configured annotation csvs:
    local paths as they are, URLs through download_meld_annotations."""
    inputs = {} if text_only() else {"unpacked": "resources/meld/unpacked"}
    urls = meld_annotation_urls()
    for split, value in (config["meld"].get("annotations") or {}).items():
        if split in urls:
            inputs[f"csv_{split}"] = MELD_ANNOTATION_DOWNLOAD.format(split=split)
        elif value:
            inputs[f"csv_{split}"] = value
    return inputs


def meld_index_md5s(wildcards):
    """Pinned md5s of the downloaded csvs, re-checked before they are indexed."""
    return {split: meld_annotation_md5(split) for split in meld_annotation_urls()}


def face_reference_input():
    """The cast's appearance references, when the faces stage selects by them."""
    if config["meld"]["faces"].get("selector", "largest") == "reference":
        return {"references": "results/ifeed/references.parquet"}
    return {}


# ----------------------------------------------------------- models.smk
# empty (first seed) or a seed folder such as seed17, slash included
SEED_DIR_PATTERN = r"(seed\d+/)?"


def model_datasets(model):
    """Wildcard constraint: the datasets the config trains ``model`` on."""
    datasets = model_setting(model, "datasets")
    return "|".join(datasets) if datasets else "(?!)"


def train_inputs(model):
    def inputs(wildcards):
        if wildcards.dataset == "ifeed":
            return named_shards("ifeed", ["faces"])
        kinds = list(MODELS[model].inputs)
        # speaker-centred clips read the face boxes of the faces stage
        if model_setting(model, "crop") == "speaker" and "faces" not in kinds:
            kinds.append("faces")
        return named_shards("meld", kinds)

    return inputs


def run_outputs(model):
    """Named run files; {seeddir} is empty for the first seed (the contract paths)."""
    folder = f"{model_dir(model, '{dataset}')}/{{seeddir}}"
    return {Path(name).stem: f"{folder}{name}" for name in TRAIN_FILES}


def member_folder(member="{member}"):
    return f"{layout.MEMBERS_DIR}/member{member}/"


def train_outputs(model):
    """The run files a training job writes: its run's, or for an ensemble its
    member's, inside the run (crossemotion.layout.member_subdir)."""
    outputs = run_outputs(model)
    if not ENSEMBLES[model]:
        return outputs
    return {
        key: path.replace("{seeddir}", f"{{seeddir}}{member_folder()}")
        for key, path in outputs.items()
    }


def train_log(model, kind):
    """log or benchmark file of a training job; an ensemble's member has its own."""
    member = "_member{member}" if ENSEMBLES[model] else ""
    if kind == "benchmark":
        return f"logs/benchmarks/{{seeddir}}train_{model}_{{dataset}}{member}.tsv"
    return f"logs/models/{model}/{{seeddir}}{{dataset}}{member}.log"


def member_cfg(model):
    """A training job's model section: the model's, or its ensemble member's."""
    if not ENSEMBLES[model]:
        return model_cfg(model)
    return lambda wildcards: ENSEMBLES[model][int(wildcards.member)]


def ensemble_inputs(model):
    """The run files of every member of the ensemble's seed and dataset."""

    def inputs(wildcards):
        run = f"{model_dir(model, wildcards.dataset)}/{wildcards.seeddir}"
        folders = [f"{run}{member_folder(i)}" for i in range(len(ENSEMBLES[model]))]
        return {
            "metrics": [f"{f}{layout.METRICS}" for f in folders],
            "files": [
                f"{f}{name}"
                for f in folders
                for name in TRAIN_FILES
                if name != layout.METRICS
            ],
        }

    return inputs


def train_params(model):
    return {
        "model": model,
        "model_cfg": member_cfg(model),
        "seed": job_seed,
        # only when not the default: emotion runs keep their params (no rerun)
        **({"task": task()} if task() != "emotion" else {}),
        "device": config.get("device", "auto"),
        "demo": demo_data(),
    }


def model_gpus(model):
    """GPUs one job of ``model`` asks the executor for (training and transfer).

    SLURM's executor turns `gpu` into `sbatch --gpus`, which a cluster without
    GPU GRES rejects, so nothing is asked unless the config says so (the
    model's `gpus`, default 0) or `--set-resources RULE:gpu=N` does;
    `device: cpu` never asks. `device: auto` then trains on the GPU the job got.
    """
    if config.get("device", "auto") == "cpu":
        return 0
    return int(model_setting(model, "gpus"))


def train_resources(model):
    """Memory and time of a training job: an ensemble's member may set its own
    (a member reading whole dialogues needs more than the utterance alone)."""
    defaults = {"mem_mb": MODELS[model].mem_mb, "runtime": MODELS[model].runtime}
    if ENSEMBLES[model]:
        members = ENSEMBLES[model]
        sized = {
            key: lambda wildcards, key=key, default=default: int(
                members[int(wildcards.member)].get(key, default)
            )
            for key, default in defaults.items()
        }
    else:
        sized = {key: int(model_cfg(model).get(key, d)) for key, d in defaults.items()}
    return {**sized, "gpu": model_gpus(model)}


# --------------------------------------------------------- transfer.smk
def transfer_modes():
    fractions = transfer_cfg().get("fractions", [])
    return "|".join(["zero_shot", *(re.escape(f"finetune_{f:g}") for f in fractions)])


def transfer_inputs(wildcards):
    """The source model of the job's seed, and the shards of both datasets."""
    source_train = named_shards(wildcards.source, ["faces"])[
        layout.input_name("faces", "train")
    ]
    source_dir = model_dir(transfer_model(), wildcards.source)
    inputs = {
        "model": f"{source_dir}/{wildcards.seeddir}{layout.CHECKPOINT}",
        "source_train": source_train,
        **named_shards(wildcards.target, ["faces"]),
    }
    # MELD utterances without a detected face still count (scored by prior)
    if wildcards.target == "meld":
        inputs.update(named_shards("meld", ["text"]))
    if transfer_cfg().get("exclude_overlap", True):
        inputs["leakage"] = "results/ifeed/leakage.parquet"
    return inputs


def transfer_outputs():
    """Named cell files; {seeddir} is empty for the first seed (the contract paths)."""
    folder = layout.transfer_dir("{source}", "{target}", "{mode}")
    return {
        Path(name).stem: f"{folder}/{{seeddir}}{name}" for name in layout.TRANSFER_FILES
    }


# ----------------------------------------------------------- report.smk
def report_model_runs():
    return [[m, d] for m, d in model_runs()]


def report_transfer_cells():
    return [[s, t, m] for s, t, m in transfer_cells()]


def transfer_leakage_input():
    """The leak links the transfer cells excluded by, for the target-only rows."""
    if transfer_cells() and transfer_cfg().get("exclude_overlap", True):
        return {"leakage": "results/ifeed/leakage.parquet"}
    return {}


def speaker_crop_scale():
    """crop_scale of the first clip model cropping around the speaker (else the default)."""
    for name, info in MODELS.items():
        if info.unit == "video" and model_setting(name, "crop") == "speaker":
            return float(model_setting(name, "crop_scale"))
    return float(model_default("crop_scale"))


def data_files():
    """Files whose names/sizes (manifests: bytes) make the data fingerprint."""
    files = meld_shards("text")
    if not text_only():
        files += ["results/meld/manifest.parquet", "results/ifeed/manifest.parquet"]
        files += meld_shards("faces") + ifeed_shards()
    return files


def report_params():
    return {
        "config": config,
        "demo": demo_data(),
        "root": workflow.basedir,
        "data_files": data_files(),
        "reference_rows": config.get("report", {}).get("reference_rows", True),
    }


def confusion_figures():
    return [f"results/figures/confusion/{m}/{d}.png" for m, d in model_runs()]


def training_figures():
    return [f"results/figures/training/{m}/{d}.png" for m, d in model_runs()]


def report_inputs():
    inputs = [
        "results/tables/benchmark.html",
        "results/tables/character_wise.html",
        "results/figures/character_wf1.png",
    ]
    inputs += confusion_figures() + training_figures()
    if not text_only():
        inputs += ["results/ifeed/alignment.html", "results/tables/speaker_faces.html"]
    if transfer_cells():
        inputs += [
            "results/tables/transfer.html",
            "results/figures/transfer_heatmap.png",
        ]
    return inputs
