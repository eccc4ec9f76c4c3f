"""Write one of the tables (benchmark, character_wise, transfer) with provenance."""

from crossemotion.logs import setup_logging
from crossemotion.reporting.pipeline import write_named_table

sm = snakemake  # type: ignore[name-defined]

log = setup_logging(sm.log[0])
write_named_table(
    table=sm.params.table,
    csv_path=sm.output.csv,
    md_path=sm.output.md,
    html_path=sm.output.html,
    # the leak links, when transfer cells excluded leaked items (the target-only row follows)
    settings={**sm.params.settings, "leakage": getattr(sm.input, "leakage", None)},
    runs=[tuple(r) for r in sm.params.get("runs", [])],
    cells=[tuple(c) for c in sm.params.get("cells", [])],
    transfer_model=sm.params.get("transfer_model", "resnet50"),
)
log.info("wrote %s", sm.output.csv)
