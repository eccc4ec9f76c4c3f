"""Downloads that resume, retry, verify and only then appear at their path.

The partial file lives at ``dest + ".part"``; a rerun continues it with an HTTP
Range request (or restarts when the server ignores Range). The checksum is
verified before the atomic rename, so ``dest`` is complete or absent.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

log = logging.getLogger(__name__)

ZENODO_API = "https://zenodo.org/api/records/"


class DownloadError(RuntimeError):
    """A download that cannot complete; the message says what to do."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    url: str
    md5: str | None = None
    size: int | None = None


def file_digest(path: str | os.PathLike[str], algorithm: str = "md5") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _progress(total: int | None, initial: int, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, desc=name, mininterval=2.0
    )


def _fetch_once(url: str, part: Path, timeout: float, chunk: int) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as resp:
        if resp.status_code == 416 and have:
            return  # the partial file is already complete
        if 400 <= resp.status_code < 500:
            raise DownloadError(f"{url}: HTTP {resp.status_code}; check the URL in the config")
        resp.raise_for_status()
        if have and resp.status_code != 206:
            log.info("server ignored the Range request; restarting %s", part.name)
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        mode = "ab" if have else "wb"
        with open(part, mode) as out, _progress(total, have, part.name) as bar:
            for block in resp.iter_content(chunk_size=chunk):
                out.write(block)
                bar.update(len(block))
        if total is not None and part.stat().st_size < total:
            raise requests.ConnectionError(
                f"connection closed at {part.stat().st_size} of {total} bytes"
            )


def download(
    url: str,
    dest: str | os.PathLike[str],
    md5: str | None = None,
    sha256: str | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    chunk: int = 1 << 20,
    hint: str = "",
) -> Path:
    """Download ``url`` to ``dest``; returns the path. Raises DownloadError."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    hint = f" {hint}" if hint else ""
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, timeout, chunk)
            break
        except DownloadError:
            raise
        except (requests.ConnectionError, requests.Timeout, requests.HTTPError) as exc:
            if attempt == retries:
                raise DownloadError(
                    f"could not download {url} after {retries + 1} attempts: {exc}.{hint}"
                ) from exc
            wait = backoff * 2**attempt
            log.warning("download of %s failed (%s); retry in %.1f s", url, exc, wait)
            time.sleep(wait)
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        got = file_digest(part, algorithm)
        if expected is None:
            if algorithm == "md5":
                log.info("md5 of %s is %s (pin it in the config to detect changes)", dest, got)
            continue
        if got.lower() != expected.lower():
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{algorithm} mismatch for {url}: expected {expected}, got {got}; the partial "
                f"file was removed.{hint}"
            )
    os.replace(part, dest)
    return dest


def zenodo_files(
    record: int | str, api: str = ZENODO_API, timeout: float = 30.0
) -> list[RemoteFile]:
    """Files of a Zenodo record with their md5s, from the record's JSON API."""
    url = f"{api.rstrip('/')}/{record}"
    try:
        resp = requests.get(url, timeout=timeout)
        resp.raise_for_status()
    except requests.RequestException as exc:
        raise DownloadError(
            f"cannot read Zenodo record {record} at {url}: {exc}; pin `ifeed.files` in the config "
            "or set `ifeed.archives` to local copies"
        ) from exc
    files = resp.json().get("files", [])
    entries = files.get("entries", {}).values() if isinstance(files, dict) else files
    out = []
    for entry in entries:
        name = entry.get("key") or entry.get("filename")
        links = entry.get("links", {})
        link = links.get("content") or links.get("self") or links.get("download")
        checksum = entry.get("checksum") or ""
        md5 = checksum.split(":", 1)[1] if checksum.startswith("md5:") else None
        if name and link:
            out.append(RemoteFile(name=name, url=link, md5=md5, size=entry.get("size")))
    return out
