"""Unpack dataset archives safely (nested archives included) and write the report.

An input ending in .json is a record-mode listing; its files are the archives.
``params.usable`` ("clips" or "images") names what the unpack must yield: one
that yields none fails the rule with the reason (members refused, per reason),
instead of succeeding empty.
"""

import json
from pathlib import Path

from crossemotion.ingest.archives.unpack import Budget, UnpackError, safe_extract
from crossemotion.ingest.ifeed.members import IMAGE_SUFFIXES
from crossemotion.ingest.meld.index import CLIP_SUFFIXES
from crossemotion.io import write_json
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]
log = setup_logging(sm.log[0])
archives = []
for item in map(Path, sm.input):
    if item.suffix == ".json":
        archives += [Path(f["path"]) for f in json.loads(item.read_text())["files"]]
    else:
        archives.append(item)
usable = {"clips": CLIP_SUFFIXES, "images": IMAGE_SUFFIXES}[sm.params.usable]
budget = Budget.from_config(sm.config.get("unpack"))
try:
    report = safe_extract(archives, sm.output.unpacked, budget=budget, require=sorted(usable))
except UnpackError as err:  # budgets, unreadable archives, nothing usable: the log says why
    log.error("%s", err)
    raise SystemExit(1) from None
write_json(sm.output.report, report.to_dict())
