"""Record mode: download every file of the IFEED Zenodo record, then list them.

Used when ifeed.files is not pinned; the listing (JSON) is the job's output so
the DAG needs no network, and the downloads beside it resume after a failure.
Each file must match the API's md5, and that md5 must be one of the record's
published md5s pinned in ifeed.record_md5s (when given).
"""

from pathlib import Path

from crossemotion.ingest.archives.download import (
    DownloadError,
    check_published,
    download,
    zenodo_files,
)
from crossemotion.io import write_json
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]

log = setup_logging(sm.log[0])
params = sm.params
hint = "Set ifeed.archives to local copies of the IFEED zips to skip the download."
try:
    files = zenodo_files(params.record, api=params.api)
    log.info("Zenodo record %s lists %d files", params.record, len(files))
    paths = []
    for remote in files:
        dest = Path(params.folder) / remote.name
        if remote.md5:
            check_published(remote.name, remote.md5, params.record, params.published)
        download(
            remote.url, dest, md5=remote.md5, size=remote.size, hint=hint,
            md5_in=list(params.published),
        )  # fmt: skip
        paths.append(
            {"name": remote.name, "path": str(dest), "md5": remote.md5, "size": remote.size}
        )
except DownloadError as err:
    log.error("%s", err)
    raise
write_json(sm.output[0], {"record": params.record, "files": paths})
