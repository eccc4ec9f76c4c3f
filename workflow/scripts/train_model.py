"""Train one model on one dataset (rules train_*): shards in, model dir out."""

from pathlib import Path

from crossemotion.config import faces_stage
from crossemotion.layout import shard_inputs
from crossemotion.logs import setup_logging
from crossemotion.training.runner import train_and_evaluate
from crossemotion.training.settings import JobSettings

sm = snakemake  # type: ignore[name-defined]


log = setup_logging(sm.log[0])
params = sm.params
log.info("training %s on %s (demo: %s)", params.model, sm.wildcards.dataset, params.demo)
train_and_evaluate(
    params.model,
    sm.wildcards.dataset,
    params.model_cfg,
    # the validated config's task, device, frozen cache (not a param: a cache's
    # location must not rerun jobs) and progress interval; the job's own seed; the
    # faces stage, recorded in model.pt so that serving cuts faces as training saw them
    JobSettings.from_config(
        sm.config,
        seed=params.seed,
        demo=params.demo,
        threads=sm.threads,
        faces=faces_stage(sm.config, sm.wildcards.dataset),
    ),
    shard_inputs(sm.input),
    # the run directory holds every named output (crossemotion.layout.TRAIN_FILES)
    Path(sm.output.metrics).parent,
)
