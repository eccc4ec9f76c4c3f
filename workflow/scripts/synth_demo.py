"""Snakemake entry: write the demo MELD.Raw.tar.gz and IFEED_Base.zip."""

from pathlib import Path

from crossemotion.logs import setup_logging
from crossemotion.synth.generate import IFEED_NAME, MELD_NAME, SynthSettings, generate

snakemake = globals()["snakemake"]
log = setup_logging(snakemake.log[0])
out = Path(snakemake.output.meld).parent
if (
    Path(snakemake.output.ifeed).parent != out
    or Path(snakemake.output.meld).name != MELD_NAME
    or Path(snakemake.output.ifeed).name != IFEED_NAME
):
    raise ValueError(f"outputs must be {out}/{MELD_NAME} and {out}/{IFEED_NAME}")
settings = SynthSettings.from_config(dict(snakemake.params.synth), workers=snakemake.threads)
summary = generate(out, settings)
log.info("demo data written in %.1f s", summary["seconds"])
