# One training rule per model of the model table (crossemotion.models.registry),
# named train_{model}. Each job reads the shard files its model needs, trains,
# and writes results/models/{model}/{dataset}/ (checkpoint, metrics,
# predictions, per-epoch log); an interrupted job resumes from the state in
# results/models/{model}/{dataset}/.resume/ when it is rerun.
#
# A model with an ensemble (models.{model}.ensemble) trains each member as its
# own job of train_{model}, into members/member{k}/ of its run, and
# ensemble_{model} writes the run from them: members resume, rerun and go to a
# cluster one by one, and changing one member retrains only that one.

for model in MODELS:

    rule:
        name:
            f"train_{model}"
        input:
            unpack(train_inputs(model)),
        output:
            **train_outputs(model),
        log:
            train_log(model, "log"),
        benchmark:
            train_log(model, "benchmark")
        wildcard_constraints:
            dataset=model_datasets(model),
            seeddir=SEED_DIR_PATTERN,
            member=r"\d+",
        # the longest jobs start first, so the short ones fill the other cores
        priority: MODELS[model].priority
        conda:
            "../../envs/crossemotion.yaml"
        threads: model_setting(model, "threads")
        resources:
            **job_resources(f"train_{model}", model=model),
        params:
            **train_params(model),
        script:
            "../scripts/train_model.py"


for model in [m for m in MODELS if ENSEMBLES.get(m)]:

    rule:
        name:
            f"ensemble_{model}"
        input:
            unpack(ensemble_inputs(model)),
        output:
            **run_outputs(model),
        log:
            f"logs/models/{model}/{{seeddir}}{{dataset}}.log",
        wildcard_constraints:
            dataset=model_datasets(model),
            seeddir=SEED_DIR_PATTERN,
        conda:
            "../../envs/crossemotion.yaml"
        threads: 1
        resources:
            **job_resources("ensemble"),
        params:
            section=model_cfg(model),
        script:
            "../scripts/combine_ensemble.py"
