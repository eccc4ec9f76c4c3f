"""Download one file: MELD.Raw.tar.gz, a MELD annotation csv, or one pinned
IFEED file (params.remote)."""

from crossemotion.ingest.archives.download import DownloadError, download, expected_md5
from crossemotion.logs import setup_logging

sm = snakemake  # type: ignore[name-defined]

log = setup_logging(sm.log[0])
params = sm.params
remote = getattr(params, "remote", None)
try:
    md5_in: list[str] = []
    if remote:
        url, sha256, size = remote["url"], None, remote.get("size")
        # a md5 pinned for the file wins, else the record API's; without either
        # the file must still be one of the record's published md5s
        md5 = expected_md5(
            remote["name"], remote.get("md5"), params.record, params.api, params.published
        )
        md5_in = [] if remote.get("md5") else list(params.published)
    else:
        if not params.url:
            raise SystemExit(
                "meld.archive is null and meld.url is not set: set one of them in the config"
            )
        url, md5, sha256, size = params.url, params.md5, params.sha256, None
    log.info("downloading %s -> %s", url, sm.output[0])
    download(
        url, sm.output[0], md5=md5, sha256=sha256, size=size, hint=params.hint,
        md5_in=md5_in,
    )  # fmt: skip
except DownloadError as err:
    log.error("%s", err)  # the job's log says why, not only Snakemake's console
    raise
