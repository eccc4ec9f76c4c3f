"""Unpack dataset archives safely (nested archives included) and write the report.

An input ending in .json is a record-mode listing; its files are the archives.
"""

import json
from pathlib import Path

from crossemotion.ingest.archives.unpack import Budget, safe_extract
from crossemotion.io import write_json
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]
setup_logging(sm.log[0])
archives = []
for item in map(Path, sm.input):
    if item.suffix == ".json":
        archives += [Path(f["path"]) for f in json.loads(item.read_text())["files"]]
    else:
        archives.append(item)
budget = Budget.from_config(sm.config.get("unpack"))
report = safe_extract(archives, sm.output.unpacked, budget=budget)
write_json(sm.output.report, report.to_dict())
