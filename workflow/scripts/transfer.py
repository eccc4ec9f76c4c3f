"""One transfer cell (rule transfer): source checkpoint + target shards in, cell dir out."""

from pathlib import Path

from crossemotion.logs import setup_logging
from crossemotion.training.runner import shard_inputs_from_paths
from crossemotion.transfer import Cell, TransferInputs, run_transfer

snakemake = globals()["snakemake"]
log = setup_logging(snakemake.log[0])
wc = snakemake.wildcards
cell = Cell(wc.source, wc.target, wc.mode)
target = shard_inputs_from_paths([*snakemake.input.faces, *snakemake.input.text])
inputs = TransferInputs(
    checkpoint=Path(snakemake.input.model),
    source_train=[Path(p) for p in snakemake.input.source_train],
    faces={s: list(p) for s, p in target.faces.items()},
    text={s: list(p) for s, p in target.text.items()},
    # the leak links are an input only when exclude_overlap is on
    leakage=Path(links) if (links := getattr(snakemake.input, "leakage", None)) else None,
)
log.info("transfer %s -> %s, %s", cell.source, cell.target, cell.mode)
run_transfer(
    cell,
    inputs,
    snakemake.params.transfer,
    {"seed": snakemake.params.seed, "device": snakemake.params.device},
    Path(snakemake.output.metrics).parent,
    threads=snakemake.threads,
)
