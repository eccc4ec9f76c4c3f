"""Train one model on one dataset (rules train_*): shards in, model dir out."""

from pathlib import Path

from crossemotion.layout import shard_inputs
from crossemotion.logs import setup_logging
from crossemotion.training.runner import train_and_evaluate

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
params = sm.params
log.info("training %s on %s (demo: %s)", params.model, sm.wildcards.dataset, params.demo)
train_and_evaluate(
    params.model,
    sm.wildcards.dataset,
    params.model_cfg,
    {
        "seed": params.seed,
        "task": params.get("task", "emotion"),
        "device": params.device,
        "demo": params.demo,
        # read from the config, not a param: a cache's location must not rerun jobs
        "frozen_cache": sm.config.get("frozen_cache"),
    },
    shard_inputs(sm.input),
    # the run directory holds every named output (crossemotion.layout.TRAIN_FILES)
    Path(sm.output.metrics).parent,
    threads=sm.threads,
)
