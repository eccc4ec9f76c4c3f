"""Train one model on one dataset (rules train_*): shards in, model dir out."""

from pathlib import Path

from crossemotion.logs import setup_logging
from crossemotion.training.runner import shard_inputs_from_paths, train_and_evaluate

snakemake = globals()["snakemake"]
log = setup_logging(snakemake.log[0])
params = snakemake.params
out_dir = Path(snakemake.output[1]).parent
log.info("training %s on %s (demo: %s)", params.model, snakemake.wildcards.dataset, params.demo)
train_and_evaluate(
    params.model,
    snakemake.wildcards.dataset,
    params.model_cfg,
    {
        "seed": params.seed,
        "task": params.get("task", "emotion"),
        "device": params.device,
        "demo": params.demo,
    },
    shard_inputs_from_paths(snakemake.input),
    out_dir,
    threads=snakemake.threads,
)
