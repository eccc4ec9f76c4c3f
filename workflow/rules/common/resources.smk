# What a job asks the executor for (SLURM: `--mem`, `--time`, `--gpus`). Every
# rule's `resources:` is one call of `job_resources`; the sizes themselves
# come from crossemotion.resources (the rule's sizing, or the model table's
# for a training job, at the data size of this config), so the demo asks
# demo-sized memory and the real config cluster-sized, whatever the profile.
from crossemotion import resources as job_sizes


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


def job_resources(name, model=None, gpus_of=None):
    """The ``resources:`` of the rule called ``name``, i.e. ``mem_mb`` and
    ``runtime`` (minutes) from crossemotion.resources.job_resources, where a
    model's or ensemble member's own ``mem_mb``/``runtime`` win; for the
    training job of ``model`` (or the transfer job following ``gpus_of``) also
    ``gpu``."""
    model_sizing = MODELS[model].sizing if model else None
    if model and ENSEMBLES[model]:
        members = ENSEMBLES[model]

        # each member of an ensemble may ask its own (one reading whole
        # dialogues needs more than one reading the utterance alone)
        def member(wildcards):
            section = members[int(wildcards.member)]
            return job_sizes.job_resources(
                name, config, model=model_sizing, section=section
            )

        sized = {
            "mem_mb": lambda wildcards: member(wildcards).mem_mb,
            "runtime": lambda wildcards: member(wildcards).runtime,
        }
    else:
        section = model_cfg(model) if model else None
        request = job_sizes.job_resources(
            name, config, model=model_sizing, section=section
        )
        sized = {"mem_mb": request.mem_mb, "runtime": request.runtime}
    gpus_of = model or gpus_of
    return {**sized, "gpu": model_gpus(gpus_of)} if gpus_of else sized
