"""Resumable, verified downloads and Zenodo record listings.

``download`` streams a URL into ``dest + ".part"``, resumes that partial file
with an HTTP Range request after a dropped connection (restarting when the
server ignores Range), retries connection errors and 5xx answers with
exponential backoff, checks md5/sha256 and only then renames the file onto
``dest``: a file at ``dest`` is always complete and verified.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

log = logging.getLogger(__name__)

ZENODO_API = "https://zenodo.org/api/records/"
DEFAULT_HINT = "Download the file by other means and point the config at the local copy."


class DownloadError(RuntimeError):
    """A download failed for good (after retries, or at once for a 4xx)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the pinned checksum."""


class _Retryable(Exception):
    """A failure worth another attempt (connection drop, 5xx, short body)."""


@dataclass
class RemoteFile:
    name: str
    url: str
    md5: str | None = None
    size: int | None = None


def file_digests(path: str | os.PathLike[str], chunk: int = 1 << 20) -> tuple[str, str]:
    """(md5, sha256) hex digests of a file, read in one pass."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def _checksum_problem(
    md5: str,
    sha: str,
    want_md5: str | None,
    want_sha: str | None,
    md5_in: Collection[str] = (),
) -> str | None:
    if want_md5 and md5.lower() != want_md5.strip().lower():
        return f"md5 mismatch: expected {want_md5}, got {md5}"
    if md5_in and md5.lower() not in {m.strip().lower() for m in md5_in}:
        return f"md5 mismatch: got {md5}, which is none of the published {sorted(md5_in)}"
    if want_sha and sha.lower() != want_sha.strip().lower():
        return f"sha256 mismatch: expected {want_sha}, got {sha}"
    return None


def download(
    url: str,
    dest: str | os.PathLike[str],
    md5: str | None = None,
    sha256: str | None = None,
    retries: int = 5,
    backoff: float = 2.0,
    chunk: int = 1 << 20,
    progress: bool = True,
    timeout: float = 60.0,
    size: int | None = None,
    hint: str = DEFAULT_HINT,
    session: requests.Session | None = None,
    md5_in: Collection[str] = (),
) -> Path:
    """Download ``url`` to ``dest`` (returned), resuming ``dest.part`` and verifying checksums.

    ``md5_in`` is a set of published md5s the file's must be one of, for a
    source that lists its files' md5s without saying which is whose.

    ``retries`` is the number of extra attempts after connection errors, short
    bodies and 5xx answers (sleeping ``backoff * 2**i`` seconds between them);
    a 4xx answer fails at once. ``hint`` finishes every error message with what
    the user can do instead (e.g. "Set meld.archive to a local copy.").
    """
    dest = Path(dest)
    if dest.exists() and _reuse_existing(dest, md5, sha256, md5_in):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    http = session or requests.Session()
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            delay = backoff * 2 ** (attempt - 1)
            log.warning(
                "download of %s failed (%s); retry %d/%d in %.1f s",
                url, last_error, attempt, retries, delay,
            )  # fmt: skip
            time.sleep(delay)
        try:
            _fetch_into(http, url, part, chunk, progress, timeout, hint)
            break
        except _Retryable as err:
            last_error = str(err)
        except requests.ConnectionError as err:
            last_error = f"connection error: {_short(err)}"
        except requests.Timeout as err:
            last_error = f"timeout: {_short(err)}"
        except requests.RequestException as err:
            # ChunkedEncodingError and friends: the body broke off mid-stream
            last_error = f"transfer interrupted: {_short(err)}"
    else:
        kept = (
            f"; the partial file {part} is kept and resumed by the next run"
            if part.exists()
            else ""
        )
        raise DownloadError(
            f"cannot download {url} after {retries + 1} attempts: {last_error}. "
            f"Check the network and the URL{kept}. {hint}"
        )
    _finish(part, dest, url, md5, sha256, size, hint, md5_in)
    return dest


def _reuse_existing(
    dest: Path, md5: str | None, sha256: str | None, md5_in: Collection[str] = ()
) -> bool:
    got_md5, got_sha = file_digests(dest)
    problem = _checksum_problem(got_md5, got_sha, md5, sha256, md5_in)
    if problem:
        log.warning("existing %s does not verify (%s); downloading it again", dest, problem)
        dest.unlink()
        return False
    log.info("%s already present (md5 %s); not downloading it again", dest, got_md5)
    return True


def _short(err: BaseException) -> str:
    text = str(err)
    return text if len(text) < 300 else text[:300] + "..."


def _fetch_into(
    http: requests.Session,
    url: str,
    part: Path,
    chunk: int,
    progress: bool,
    timeout: float,
    hint: str,
) -> bool:
    """One attempt: append to ``part`` from where it stops. True when it resumed."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with http.get(url, stream=True, timeout=timeout, headers=headers) as resp:
        if resp.status_code == 416 and offset:
            return _range_not_satisfiable(resp, part, offset)
        _check_status(resp, url, hint)
        resumed = resp.status_code == 206 and offset > 0
        if offset and not resumed:
            log.info("server ignored the Range request for %s; restarting from byte 0", url)
            offset = 0
        elif resumed and not _content_range_starts_at(resp, offset):
            log.warning("server answered an unexpected Content-Range; restarting %s", url)
            part.unlink()
            raise _Retryable("unexpected Content-Range")
        if resumed:
            log.info("resuming %s at byte %d", url, offset)
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        got = _stream(resp, part, offset, expected, chunk, progress)
    if expected is not None and got < expected:
        raise _Retryable(f"body ended after {got} of {expected} bytes")
    return resumed


def _stream(
    resp: requests.Response,
    part: Path,
    offset: int,
    expected: int | None,
    chunk: int,
    progress: bool,
) -> int:
    total = offset + expected if expected is not None else None
    got = 0
    with (
        open(part, "ab" if offset else "wb") as fh,
        tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress, leave=False,
        ) as bar,
    ):  # fmt: skip
        for block in resp.iter_content(chunk_size=chunk):
            fh.write(block)
            got += len(block)
            bar.update(len(block))
    return got


def _check_status(resp: requests.Response, url: str, hint: str) -> None:
    code = resp.status_code
    if code >= 500:
        raise _Retryable(f"HTTP {code} {resp.reason}")
    if code >= 400:
        raise DownloadError(f"HTTP {code} {resp.reason} for {url} (not retried). {hint}")
    if code not in (200, 206):
        raise _Retryable(f"unexpected HTTP {code}")


def _content_range_starts_at(resp: requests.Response, offset: int) -> bool:
    match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
    return bool(match) and int(match.group(1)) == offset


def _range_not_satisfiable(resp: requests.Response, part: Path, offset: int) -> bool:
    """416: the partial file may already hold the whole body, or be too long."""
    match = re.match(r"bytes \*/(\d+)", resp.headers.get("Content-Range", ""))
    if match and int(match.group(1)) == offset:
        log.info("partial file %s is already complete", part)
        return True
    part.unlink()
    raise _Retryable("partial file does not fit the remote file (HTTP 416); restarting")


def _finish(
    part: Path,
    dest: Path,
    url: str,
    md5: str | None,
    sha256: str | None,
    size: int | None,
    hint: str,
    md5_in: Collection[str] = (),
) -> None:
    got_md5, got_sha = file_digests(part)
    got_size = part.stat().st_size
    problem = _checksum_problem(got_md5, got_sha, md5, sha256, md5_in)
    if problem is None and size is not None and got_size != size:
        problem = f"size mismatch: expected {size} bytes, got {got_size}"
    if problem:
        part.unlink()
        raise ChecksumError(
            f"{problem} for {url}; the bad file was removed. "
            f"Run again to download it afresh (if the source changed on purpose, "
            f"update the pinned checksum). {hint}"
        )
    if md5 or sha256 or md5_in:
        log.info("verified %s (%d bytes, md5 %s)", dest.name, got_size, got_md5)
    else:
        log.info(
            "no checksum pinned for %s: md5 %s sha256 %s (%d bytes); pin the md5 "
            "in the config to verify future downloads",
            dest.name, got_md5, got_sha, got_size,
        )  # fmt: skip
    os.replace(part, dest)


# ------------------------------------------------------------------------ Zenodo


def _md5_of(checksum: Any) -> str | None:
    if not isinstance(checksum, str) or not checksum:
        return None
    algo, _, value = checksum.partition(":")
    if not value:  # legacy records give the bare md5
        return algo.lower()
    return value.lower() if algo.lower() == "md5" else None


def _remote_file(entry: Mapping[str, Any], record_id: int | str) -> RemoteFile | None:
    name = entry.get("key") or entry.get("filename")
    if not name:
        return None
    links = entry.get("links") or {}
    # new API: links.self is the file's metadata, links.content the bytes
    url = links.get("content") or links.get("download") or links.get("self")
    if not url:
        url = f"https://zenodo.org/records/{record_id}/files/{name}?download=1"
    size = entry.get("size", entry.get("filesize"))
    return RemoteFile(
        name=str(name),
        url=str(url),
        md5=_md5_of(entry.get("checksum")),
        size=int(size) if isinstance(size, int | float) else None,
    )


def parse_zenodo_record(payload: Mapping[str, Any]) -> list[RemoteFile]:
    """Files of a Zenodo record, from the legacy list or the ``files.entries`` form."""
    record_id = payload.get("id", "")
    files = payload.get("files")
    entries: Iterable[Any]
    if isinstance(files, list):
        entries = files
    elif isinstance(files, Mapping) and isinstance(files.get("entries"), Mapping):
        entries = [{"key": k, **v} for k, v in files["entries"].items()]
    elif isinstance(files, Mapping) and isinstance(files.get("entries"), list):
        entries = files["entries"]
    else:
        raise DownloadError(
            f"Zenodo record {record_id}: no file list in the API answer "
            "(restricted or embargoed record?); pin ifeed.files or set ifeed.archives"
        )
    out = [f for e in entries if isinstance(e, Mapping) and (f := _remote_file(e, record_id))]
    return sorted(out, key=lambda f: f.name)


def zenodo_files(
    record_id: int | str, api: str = ZENODO_API, timeout: float = 30.0
) -> list[RemoteFile]:
    """Name, download URL, md5 and size of every file of a Zenodo record."""
    url = api.rstrip("/") + f"/{record_id}"
    try:
        resp = requests.get(url, timeout=timeout, headers={"Accept": "application/json"})
    except requests.RequestException as err:
        raise DownloadError(
            f"cannot reach the Zenodo API at {url}: {_short(err)}; "
            "set ifeed.archives to local copies of the record's zip files"
        ) from err
    if resp.status_code != 200:
        raise DownloadError(
            f"Zenodo API {url} answered HTTP {resp.status_code}; check ifeed.record "
            "or set ifeed.archives to local copies"
        )
    try:
        payload = resp.json()
    except ValueError as err:
        raise DownloadError(f"Zenodo API {url} did not answer JSON: {err}") from err
    return parse_zenodo_record(payload)


def pinned_md5(name: str, record_id: int | str | None, api: str = ZENODO_API) -> str | None:
    """The record's md5 for ``name``, or None (logged) when the API cannot tell."""
    if record_id is None:
        return None
    try:
        listing = {f.name: f for f in zenodo_files(record_id, api)}
    except DownloadError as err:
        log.warning("no md5 for %s from Zenodo (%s); downloading unverified", name, err)
        return None
    found = listing.get(name)
    if found is None or not found.md5:
        log.warning("Zenodo record %s lists no md5 for %s; downloading unverified", record_id, name)
        return None
    log.info("md5 of %s from Zenodo record %s: %s", name, record_id, found.md5)
    return found.md5


def check_published(
    name: str, md5: str, record_id: int | str | None, published: Collection[str]
) -> None:
    """Fail when the record API's md5 for ``name`` is none of the pinned published ones."""
    if published and md5.lower() not in {m.strip().lower() for m in published}:
        raise ChecksumError(
            f"Zenodo record {record_id} now lists md5 {md5} for {name}, none of the "
            f"published md5s pinned in ifeed.record_md5s {sorted(published)}: the record "
            "changed (or ifeed.record names another record); check it and update the pins"
        )


def expected_md5(
    name: str,
    pinned: str | None,
    record_id: int | str | None,
    api: str = ZENODO_API,
    published: Collection[str] = (),
) -> str | None:
    """The md5 a record's file must have: the one pinned for it wins, else the
    record API's (which must be among ``published`` when that is given).

    None when neither is known; the caller then verifies against
    ``published`` alone (``download(..., md5_in=published)``).
    """
    if pinned:
        return pinned
    md5 = pinned_md5(name, record_id, api)
    if md5:
        check_published(name, md5, record_id, published)
    return md5
