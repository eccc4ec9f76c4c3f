# One training rule per model. Each job reads the shard files its model needs,
# trains, and writes results/models/{model}/{dataset}/ (checkpoint, metrics,
# predictions, per-epoch log); an interrupted job resumes from the state in
# results/models/{model}/{dataset}/.resume/ when it is rerun.


include: "models_common.smk"


rule train_cnn_lstm:
    input:
        train_inputs("cnn_lstm"),
    output:
        train_outputs("cnn_lstm"),
    log:
        "logs/models/cnn_lstm/{seeddir}{dataset}.log",
    benchmark:
        "logs/benchmarks/{seeddir}train_cnn_lstm_{dataset}.tsv"
    wildcard_constraints:
        dataset=model_datasets("cnn_lstm"),
        seeddir=SEED_DIR_PATTERN,
    # the longest jobs start first, so the short ones fill the other cores
    priority: 40
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
        "logs/models/c3d/{seeddir}{dataset}.log",
    benchmark:
        "logs/benchmarks/{seeddir}train_c3d_{dataset}.tsv"
    wildcard_constraints:
        dataset=model_datasets("c3d"),
        seeddir=SEED_DIR_PATTERN,
    priority: 30
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
        "logs/models/resnet50/{seeddir}{dataset}.log",
    benchmark:
        "logs/benchmarks/{seeddir}train_resnet50_{dataset}.tsv"
    wildcard_constraints:
        dataset=model_datasets("resnet50"),
        seeddir=SEED_DIR_PATTERN,
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
        "logs/models/text/{seeddir}{dataset}.log",
    benchmark:
        "logs/benchmarks/{seeddir}train_text_{dataset}.tsv"
    wildcard_constraints:
        dataset=model_datasets("text"),
        seeddir=SEED_DIR_PATTERN,
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
        "logs/models/fusion/{seeddir}{dataset}.log",
    benchmark:
        "logs/benchmarks/{seeddir}train_fusion_{dataset}.tsv"
    wildcard_constraints:
        dataset=model_datasets("fusion"),
        seeddir=SEED_DIR_PATTERN,
    conda:
        "../../envs/crossemotion.yaml"
    threads: model_cfg("fusion").get("threads", 2)
    resources:
        **train_resources("fusion"),
    params:
        **train_params("fusion"),
    script:
        "../scripts/train_model.py"
