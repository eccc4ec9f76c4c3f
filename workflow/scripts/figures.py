"""Draw one report figure (confusion, training, transfer_heatmap, character_bars)."""

from crossemotion.logs import setup_logging
from crossemotion.reporting.pipeline import draw_named_figure

sm = snakemake  # type: ignore[name-defined]

log = setup_logging(sm.log[0])
draw_named_figure(
    figure=sm.params.figure,
    source=sm.input[0],
    target=sm.output[0],
    demo=bool(sm.params.demo),
    title=" / ".join(str(v) for v in sm.wildcards),
)
log.info("wrote %s", sm.output[0])
