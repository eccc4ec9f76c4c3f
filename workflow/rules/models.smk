# One training rule per model. Each job reads the shard files its model needs,
# trains, and writes results/models/{model}/{dataset}/ (checkpoint, metrics,
# predictions, per-epoch log); an interrupted job resumes from the state in
# results/models/{model}/{dataset}/.resume/ when it is rerun.

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
        return [path for kind in MODEL_INPUTS[model] for path in meld_shards(kind)]

    return inputs


def train_params(model):
    return {
        "model": model,
        "model_cfg": model_cfg(model),
        "seed": config.get("seed", 13),
        "device": config.get("device", "auto"),
        "demo": demo_data(),
    }


def train_resources(model):
    cfg = model_cfg(model)
    # SLURM's executor turns `gpu` into --gpus; on a CPU-only config ask for none
    gpus = 0 if config.get("device", "auto") == "cpu" else int(cfg.get("gpus", 0))
    return {
        "mem_mb": int(cfg.get("mem_mb", MODEL_MEM_MB[model])),
        "runtime": int(cfg.get("runtime", MODEL_RUNTIME[model])),
        "gpu": gpus,
    }


def train_outputs(model):
    return multiext(f"results/models/{model}/{{dataset}}/", *TRAIN_FILES)


TRAIN_FILES = ("model.pt", "metrics.json", "predictions.parquet", "train_log.csv")


rule train_cnn_lstm:
    input:
        train_inputs("cnn_lstm"),
    output:
        train_outputs("cnn_lstm"),
    log:
        "logs/models/cnn_lstm/{dataset}.log",
    benchmark:
        "logs/benchmarks/train_cnn_lstm_{dataset}.tsv"
    wildcard_constraints:
        dataset=model_datasets("cnn_lstm"),
    conda:
        "../../envs/crossemotion.yaml"
    threads: model_cfg("cnn_lstm").get("threads", 2)
    resources:
        **train_resources("cnn_lstm"),
    params:
        **train_params("cnn_lstm"),
    script:
        "../scripts/train_model.py"


rule train_c3d:
    input:
        train_inputs("c3d"),
    output:
        train_outputs("c3d"),
    log:
        "logs/models/c3d/{dataset}.log",
    benchmark:
        "logs/benchmarks/train_c3d_{dataset}.tsv"
    wildcard_constraints:
        dataset=model_datasets("c3d"),
    conda:
        "../../envs/crossemotion.yaml"
    threads: model_cfg("c3d").get("threads", 2)
    resources:
        **train_resources("c3d"),
    params:
        **train_params("c3d"),
    script:
        "../scripts/train_model.py"


rule train_resnet50:
    input:
        train_inputs("resnet50"),
    output:
        train_outputs("resnet50"),
    log:
        "logs/models/resnet50/{dataset}.log",
    benchmark:
        "logs/benchmarks/train_resnet50_{dataset}.tsv"
    wildcard_constraints:
        dataset=model_datasets("resnet50"),
    conda:
        "../../envs/crossemotion.yaml"
    threads: model_cfg("resnet50").get("threads", 2)
    resources:
        **train_resources("resnet50"),
    params:
        **train_params("resnet50"),
    script:
        "../scripts/train_model.py"


rule train_text:
    input:
        train_inputs("text"),
    output:
        train_outputs("text"),
    log:
        "logs/models/text/{dataset}.log",
    benchmark:
        "logs/benchmarks/train_text_{dataset}.tsv"
    wildcard_constraints:
        dataset=model_datasets("text"),
    conda:
        "../../envs/crossemotion.yaml"
    threads: model_cfg("text").get("threads", 2)
    resources:
        **train_resources("text"),
    params:
        **train_params("text"),
    script:
        "../scripts/train_model.py"


rule train_fusion:
    input:
        train_inputs("fusion"),
    output:
        train_outputs("fusion"),
    log:
        "logs/models/fusion/{dataset}.log",
    benchmark:
        "logs/benchmarks/train_fusion_{dataset}.tsv"
    wildcard_constraints:
        dataset=model_datasets("fusion"),
    conda:
        "../../envs/crossemotion.yaml"
    threads: model_cfg("fusion").get("threads", 2)
    resources:
        **train_resources("fusion"),
    params:
        **train_params("fusion"),
    script:
        "../scripts/train_model.py"
