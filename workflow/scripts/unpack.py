"""Unpack dataset archives safely (nested archives included) and write the report.

An input ending in .json is a record-mode listing; its files are the archives.
"""

import json
from pathlib import Path

from crossemotion.data.unpack import Budget, safe_extract
from crossemotion.io import write_json
from crossemotion.logs import setup_logging

setup_logging(snakemake.log[0])
archives = []
for item in map(Path, snakemake.input):
    if item.suffix == ".json":
        archives += [Path(f["path"]) for f in json.loads(item.read_text())["files"]]
    else:
        archives.append(item)
budget = Budget.from_config(snakemake.config.get("unpack"))
report = safe_extract(archives, snakemake.output.unpacked, budget=budget)
write_json(snakemake.output.report, report.to_dict())
