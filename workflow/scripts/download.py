"""Download one archive: MELD.Raw.tar.gz, or one pinned IFEED file (params.remote)."""

from crossemotion.data.download import DownloadError, download, pinned_md5
from crossemotion.logs import setup_logging

log = setup_logging(snakemake.log[0])
params = snakemake.params
remote = getattr(params, "remote", None)
if remote:
    url, md5, sha256, size = remote["url"], remote.get("md5"), None, remote.get("size")
    if not md5:
        # the record's API carries the md5s; a value pinned in the config wins
        md5 = pinned_md5(remote["name"], params.record, api=params.api)
else:
    if not params.url:
        raise SystemExit(
            "meld.archive is null and meld.url is not set: set one of them in the config"
        )
    url, md5, sha256, size = params.url, params.md5, params.sha256, None
log.info("downloading %s -> %s", url, snakemake.output[0])
try:
    download(url, snakemake.output[0], md5=md5, sha256=sha256, size=size, hint=params.hint)
except DownloadError as err:
    log.error("%s", err)  # the job's log says why, not only Snakemake's console
    raise
