"""Draw one report figure (confusion, training, transfer_heatmap, character_bars)."""

from crossemotion.logs import setup_logging
from crossemotion.reporting.pipeline import draw_named_figure

log = setup_logging(snakemake.log[0])
draw_named_figure(
    figure=snakemake.params.figure,
    source=snakemake.input[0],
    target=snakemake.output[0],
    demo=bool(snakemake.params.demo),
    title=" / ".join(str(v) for v in snakemake.wildcards),
)
log.info("wrote %s", snakemake.output[0])
