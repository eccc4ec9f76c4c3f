# One training rule per model of the model table (crossemotion.models.registry),
# named train_{model}. Each job reads the shard files its model needs, trains,
# and writes results/models/{model}/{dataset}/ (checkpoint, metrics,
# predictions, per-epoch log); an interrupted job resumes from the state in
# results/models/{model}/{dataset}/.resume/ when it is rerun.

for model in MODELS:

    rule:
        name:
            f"train_{model}"
        input:
            unpack(train_inputs(model)),
        output:
            **train_outputs(model),
        log:
            f"logs/models/{model}/{{seeddir}}{{dataset}}.log",
        benchmark:
            f"logs/benchmarks/{{seeddir}}train_{model}_{{dataset}}.tsv"
        wildcard_constraints:
            dataset=model_datasets(model),
            seeddir=SEED_DIR_PATTERN,
        # the longest jobs start first, so the short ones fill the other cores
        priority: MODELS[model].priority
        conda:
            "../../envs/crossemotion.yaml"
        threads: model_setting(model, "threads")
        resources:
            **train_resources(model),
        params:
            **train_params(model),
        script:
            "../scripts/train_model.py"
