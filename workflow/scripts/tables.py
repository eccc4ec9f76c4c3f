"""Write one of the tables (benchmark, character_wise, transfer) with provenance."""

from crossemotion.logs import setup_logging
from crossemotion.reporting.pipeline import write_named_table

log = setup_logging(snakemake.log[0])
write_named_table(
    table=snakemake.params.table,
    csv_path=snakemake.output.csv,
    md_path=snakemake.output.md,
    html_path=snakemake.output.html,
    # the leak links, when transfer cells excluded leaked items (the target-only row follows)
    settings={**snakemake.params.settings, "leakage": getattr(snakemake.input, "leakage", None)},
    runs=[tuple(r) for r in snakemake.params.get("runs", [])],
    cells=[tuple(c) for c in snakemake.params.get("cells", [])],
    transfer_model=snakemake.params.get("transfer_model", "resnet50"),
)
log.info("wrote %s", snakemake.output.csv)
