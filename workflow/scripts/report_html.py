"""Build results/report.html with a nested `snakemake --report` on this workflow."""

from crossemotion.logs import setup_logging
from crossemotion.reporting.report import build_report

log = setup_logging(snakemake.log[0])
build_report(
    output=snakemake.output[0],
    snakefile=snakemake.params.snakefile,
    config=dict(snakemake.params.config),
    targets=list(snakemake.input),
)
log.info("wrote %s", snakemake.output[0])
