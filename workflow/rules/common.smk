# Set-up and the config's readers, which every other *.smk file uses. The
# other helpers (functions only, no rules) live in common/ by concern:
# paths.smk (every path and the final targets), resources.smk (what a job
# asks the executor for), and one file per stage (sources.smk for acquire and
# ingest, training.smk for models and transfer, report.smk). The Snakefile
# includes them all before any rule file, so rule files may come in any order.

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
