"""Snakemake entry: write the demo MELD.Raw.tar.gz and IFEED_Base.zip."""

from pathlib import Path

from crossemotion.logs import setup_logging
from crossemotion.synth.generate import IFEED_NAME, MELD_NAME, SynthSettings, generate

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
out = Path(sm.output.meld).parent
if (
    Path(sm.output.ifeed).parent != out
    or Path(sm.output.meld).name != MELD_NAME
    or Path(sm.output.ifeed).name != IFEED_NAME
):
    raise ValueError(f"outputs must be {out}/{MELD_NAME} and {out}/{IFEED_NAME}")
settings = SynthSettings.from_config(dict(sm.params.synth), workers=sm.threads)
summary = generate(out, settings)
log.info("demo data written in %.1f s", summary["seconds"])
