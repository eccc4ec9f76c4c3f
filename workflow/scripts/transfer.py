"""One transfer cell (rule transfer): source checkpoint + target shards in, cell dir out."""

from pathlib import Path

from crossemotion.layout import shard_inputs
from crossemotion.logs import setup_logging
from crossemotion.training.settings import JobSettings
from crossemotion.training.transfer import Cell, TransferInputs, TransferSettings, run_transfer

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
wc = sm.wildcards
cell = Cell(wc.source, wc.target, wc.mode)
target = shard_inputs(sm.input)
inputs = TransferInputs(
    checkpoint=Path(sm.input.model),
    source_train=[Path(p) for p in sm.input.source_train],
    faces={s: list(p) for s, p in target.faces.items()},
    text={s: list(p) for s, p in target.text.items()},
    # the leak links are an input only when exclude_overlap is on
    leakage=Path(links) if (links := sm.input.get("leakage")) else None,
)
log.info("transfer %s -> %s, %s", cell.source, cell.target, cell.mode)
run_transfer(
    cell,
    inputs,
    TransferSettings.from_mapping(sm.params.transfer),
    JobSettings.from_config(sm.config, seed=sm.params.seed, threads=sm.threads),
    Path(sm.output.metrics).parent,
)
