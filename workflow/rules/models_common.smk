# Helpers of the training rules (models.smk): inputs, params, resources per model.

from crossemotion.models.registry import INPUTS as MODEL_INPUTS

# Defaults per model when the config sets no mem_mb/runtime (MB, minutes).
MODEL_MEM_MB = {
    "cnn_lstm": 6000,
    "c3d": 6000,
    "resnet50": 6000,
    "text": 6000,
    "fusion": 8000,
}
MODEL_RUNTIME = {
    "cnn_lstm": 240,
    "c3d": 240,
    "resnet50": 180,
    "text": 180,
    "fusion": 360,
}


def model_cfg(model):
    return config["models"].get(model, {})


def model_datasets(model):
    """Wildcard constraint: the datasets the config trains ``model`` on."""
    datasets = model_cfg(model).get("datasets", ["meld"])
    return "|".join(datasets) if datasets else "(?!)"


def train_inputs(model):
    def inputs(wildcards):
        if wildcards.dataset == "ifeed":
            return ifeed_shards()
        kinds = list(MODEL_INPUTS[model])
        # speaker-centred clips read the face boxes of the faces stage
        if model_cfg(model).get("crop") == "speaker" and "faces" not in kinds:
            kinds.append("faces")
        return [path for kind in kinds for path in meld_shards(kind)]

    return inputs


def train_params(model):
    return {
        "model": model,
        "model_cfg": model_cfg(model),
        "seed": lambda wildcards: seed_of_subdir(wildcards.seeddir, seeds()),
        # only when not the default: emotion runs keep their params (no rerun)
        **({"task": task()} if task() != "emotion" else {}),
        "device": config.get("device", "auto"),
        "demo": demo_data(),
    }


def model_gpus(model):
    """GPUs one job of ``model`` asks the executor for (training and transfer).

    SLURM's executor turns `gpu` into `sbatch --gpus`, which a cluster without
    GPU GRES rejects, so nothing is asked unless the config says so (the
    model's `gpus`, schema default 0) or `--set-resources RULE:gpu=N` does;
    `device: cpu` never asks. `device: auto` then trains on the GPU the job got.
    """
    if config.get("device", "auto") == "cpu":
        return 0
    return int(model_cfg(model).get("gpus", 0))


def train_resources(model):
    cfg = model_cfg(model)
    return {
        "mem_mb": int(cfg.get("mem_mb", MODEL_MEM_MB[model])),
        "runtime": int(cfg.get("runtime", MODEL_RUNTIME[model])),
        "gpu": model_gpus(model),
    }


def train_outputs(model):
    # {seeddir} is empty for the first seed (the contract paths), a seed folder otherwise
    return multiext(f"results/models/{model}/{{dataset}}/{{seeddir}}", *TRAIN_FILES)


# empty (first seed) or a seed folder such as seed17, slash included
SEED_DIR_PATTERN = r"(seed\d+/)?"

TRAIN_FILES = ("model.pt", "metrics.json", "predictions.parquet", "train_log.csv")
