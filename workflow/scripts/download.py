"""Download one archive for the workflow (MELD or one IFEED file)."""

import logging

from crossemotion.data.download import DownloadError, download, zenodo_files
from crossemotion.logs import setup_logging

log = setup_logging(snakemake.log[0])
params = snakemake.params
remote = getattr(params, "remote", None)
if remote:
    url, md5 = remote["url"], remote.get("md5")
    if not md5 and params.record:
        # the record's API carries the md5s; a pinned config value wins
        try:
            listed = {f.name: f for f in zenodo_files(params.record)}
            md5 = listed[remote["name"]].md5 if remote["name"] in listed else None
        except DownloadError as exc:
            logging.getLogger(__name__).warning("%s; downloading without an md5 check", exc)
    hint = "Set `ifeed.archives` to local copies of the IFEED zips to skip the download."
    download(url, snakemake.output[0], md5=md5, hint=hint)
else:
    if not params.url:
        raise SystemExit("meld.archive is null and meld.url is not set: set one of them")
    hint = "Set `meld.archive` to a local copy of MELD.Raw.tar.gz to skip the download."
    download(params.url, snakemake.output[0], md5=params.md5, sha256=params.sha256, hint=hint)
