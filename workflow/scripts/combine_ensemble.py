"""Write an ensemble's run from its members' runs (rules ensemble_*)."""

from pathlib import Path

from crossemotion.evaluation.ensemble import combine_runs
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
members = [Path(path).parent for path in sm.input.metrics]
metrics = combine_runs(Path(sm.output.metrics).parent, members, sm.params.section)
log.info(
    "%d members averaged: dev wF1 %.4f, test wF1 %.4f (members: %s)",
    len(members),
    metrics["dev"]["weighted_f1"],
    metrics["test"]["weighted_f1"],
    ", ".join(
        f"{m['dev_weighted_f1']:.4f}/{m['test_weighted_f1']:.4f}"
        for m in metrics["ensemble"]["members"]
    ),
)
