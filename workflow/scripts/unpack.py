"""Unpack the dataset archives safely (nested archives included)."""

from pathlib import Path

from crossemotion.data.unpack import safe_extract
from crossemotion.io import write_json
from crossemotion.logs import setup_logging

setup_logging(snakemake.log[0])
report = safe_extract([Path(p) for p in snakemake.input], Path(snakemake.output.unpacked))
write_json(snakemake.output.report, report.to_dict())
