"""Downloads against a real HTTP server on 127.0.0.1 (tests/http_server.py)."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crossemotion.ingest.archives.download import (
    ChecksumError,
    DownloadError,
    download,
    expected_md5,
    parse_zenodo_record,
    pinned_md5,
    zenodo_files,
)
from tests.http_server import LocalServer, closed_port, serve
from tests.meld_fixtures import ANNOTATIONS, write_csv

BODY = os.urandom(300_000)
MD5 = hashlib.md5(BODY).hexdigest()
SHA256 = hashlib.sha256(BODY).hexdigest()
HINT = "Set `meld.archive` to a local copy of MELD.Raw.tar.gz."
FAST = {"backoff": 0.01, "progress": False}


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with serve() as s:
        yield s


def test_full_download_verifies_both_checksums(server: LocalServer, tmp_path: Path) -> None:
    url = server.add("/MELD.Raw.tar.gz", BODY)
    dest = download(url, tmp_path / "MELD.Raw.tar.gz", md5=MD5, sha256=SHA256, **FAST)
    assert dest == tmp_path / "MELD.Raw.tar.gz"
    assert dest.read_bytes() == BODY
    assert sorted(os.listdir(tmp_path)) == ["MELD.Raw.tar.gz"]  # no .part left
    assert [r["range"] for r in server.requests] == [None]


def test_interrupted_download_resumes_with_range(server: LocalServer, tmp_path: Path) -> None:
    url = server.add("/a.zip", BODY, cut_after=100_000, cut_times=1)
    dest = download(url, tmp_path / "a.zip", md5=MD5, chunk=8192, **FAST)
    assert dest.read_bytes() == BODY
    first, second = server.requests
    assert first["range"] is None and first["status"] == 200
    # the resume asks for what the first response did not deliver, and gets a 206
    start = int(second["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 100_000 and second["status"] == 206


def test_partial_file_from_killed_run_is_continued(server: LocalServer, tmp_path: Path) -> None:
    url = server.add("/b.zip", BODY)
    (tmp_path / "b.zip.part").write_bytes(BODY[:123_456])
    download(url, tmp_path / "b.zip", md5=MD5, **FAST)
    assert (tmp_path / "b.zip").read_bytes() == BODY
    assert server.requests == [{"path": "/b.zip", "range": "bytes=123456-", "status": 206}]


def test_complete_partial_file_is_accepted_on_416(server: LocalServer, tmp_path: Path) -> None:
    url = server.add("/e.zip", BODY)
    (tmp_path / "e.zip.part").write_bytes(BODY)
    download(url, tmp_path / "e.zip", md5=MD5, **FAST)
    assert (tmp_path / "e.zip").read_bytes() == BODY
    assert [r["status"] for r in server.requests] == [416]


def test_server_ignoring_range_restarts_from_zero(server: LocalServer, tmp_path: Path) -> None:
    url = server.add("/c.zip", BODY, honour_range=False)
    (tmp_path / "c.zip.part").write_bytes(b"garbage" * 100)
    download(url, tmp_path / "c.zip", md5=MD5, **FAST)
    assert (tmp_path / "c.zip").read_bytes() == BODY
    assert [(r["range"], r["status"]) for r in server.requests] == [("bytes=700-", 200)]


def test_drop_then_range_ignored_still_gives_the_right_bytes(
    server: LocalServer, tmp_path: Path
) -> None:
    url = server.add("/f.zip", BODY, honour_range=False, cut_after=50_000, cut_times=1)
    download(url, tmp_path / "f.zip", md5=MD5, **FAST)
    assert (tmp_path / "f.zip").read_bytes() == BODY
    assert len(server.requests) == 2 and server.requests[1]["status"] == 200


def test_5xx_is_retried_with_backoff(server: LocalServer, tmp_path: Path) -> None:
    url = server.add("/g.zip", BODY, fail=[503, 500])
    started = time.monotonic()
    download(url, tmp_path / "g.zip", md5=MD5, backoff=0.1, progress=False)
    assert time.monotonic() - started >= 0.1 + 0.2  # backoff * 2**i between attempts
    assert [r["status"] for r in server.requests] == [503, 500, 200]


def test_wrong_checksum_fails_and_leaves_nothing(server: LocalServer, tmp_path: Path) -> None:
    url = server.add("/d.zip", BODY)
    with pytest.raises(ChecksumError, match=r"md5 mismatch.*removed.*meld\.archive"):
        download(url, tmp_path / "d.zip", md5="0" * 32, hint=HINT, **FAST)
    assert list(tmp_path.iterdir()) == []
    assert len(server.requests) == 1  # a mismatch is not retried in a loop


def test_wrong_bytes_fail_sha256(server: LocalServer, tmp_path: Path) -> None:
    url = server.add("/w.zip", BODY[:-1] + bytes([BODY[-1] ^ 0xFF]))
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        download(url, tmp_path / "w.zip", sha256=SHA256, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_404_fails_at_once_without_retries(server: LocalServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"HTTP 404.*not retried.*meld\.archive"):
        download(server.base + "/missing.zip", tmp_path / "m.zip", hint=HINT, **FAST)
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_says_what_to_do(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/x.tar.gz"
    with pytest.raises(DownloadError, match=r"after 3 attempts.*connection.*meld\.archive") as err:
        download(url, tmp_path / "x.tar.gz", retries=2, hint=HINT, **FAST)
    assert not (tmp_path / "x.tar.gz").exists()
    assert "partial file" not in str(err.value)  # nothing arrived, so nothing is kept


def test_failed_download_keeps_its_partial_file(server: LocalServer, tmp_path: Path) -> None:
    url = server.add("/p.zip", BODY, cut_after=1000, cut_times=10)
    with pytest.raises(DownloadError, match=r"partial file .*p\.zip\.part is kept"):
        download(url, tmp_path / "p.zip", md5=MD5, retries=1, chunk=256, **FAST)
    assert 0 < (tmp_path / "p.zip.part").stat().st_size < len(BODY)


def test_existing_verified_file_is_not_fetched_again(server: LocalServer, tmp_path: Path) -> None:
    url = server.add("/h.zip", BODY)
    (tmp_path / "h.zip").write_bytes(BODY)
    download(url, tmp_path / "h.zip", md5=MD5, **FAST)
    assert server.requests == []
    (tmp_path / "h.zip").write_bytes(b"stale")  # a stale copy is replaced
    download(url, tmp_path / "h.zip", md5=MD5, **FAST)
    assert (tmp_path / "h.zip").read_bytes() == BODY


def test_unpinned_download_logs_its_md5(
    server: LocalServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.add("/i.zip", BODY)
    with caplog.at_level(logging.INFO, logger="crossemotion.ingest.archives.download"):
        download(url, tmp_path / "i.zip", **FAST)
    assert MD5 in caplog.text and "pin" in caplog.text


def _record(server: LocalServer, form: str) -> dict:
    files = [
        {"key": "IFEED_Base.zip", "checksum": f"md5:{MD5}", "size": len(BODY),
         "links": {"self": server.base + "/files/IFEED_Base.zip"}},
        {"key": "IFEED_Extra.zip", "checksum": "md5:ABC", "size": 3,
         "links": {"self": server.base + "/api/files/IFEED_Extra.zip",
                   "content": server.base + "/api/files/IFEED_Extra.zip/content"}},
    ]  # fmt: skip
    if form == "list":
        return {"id": 7971730, "files": files}
    return {"id": 7971730, "files": {"enabled": True, "entries": {f["key"]: f for f in files}}}


@pytest.mark.parametrize("form", ["list", "entries"])
def test_zenodo_record_listing(server: LocalServer, form: str) -> None:
    server.add("/api/records/7971730", _record(server, form))
    listed = zenodo_files(7971730, api=server.base + "/api/records/")
    assert [f.name for f in listed] == ["IFEED_Base.zip", "IFEED_Extra.zip"]
    assert listed[0].md5 == MD5 and listed[0].size == len(BODY)
    assert listed[0].url == server.base + "/files/IFEED_Base.zip"
    # the new API's links.self is metadata; the bytes are under links.content
    assert listed[1].url.endswith("/content") and listed[1].md5 == "abc"


def test_zenodo_listing_then_download(server: LocalServer, tmp_path: Path) -> None:
    server.add("/api/records/7971730", _record(server, "entries"))
    server.add("/files/IFEED_Base.zip", BODY)
    listing = {f.name: f for f in zenodo_files(7971730, api=server.base + "/api/records")}
    entry = listing["IFEED_Base.zip"]
    download(entry.url, tmp_path / entry.name, md5=entry.md5, size=entry.size, **FAST)
    assert (tmp_path / "IFEED_Base.zip").read_bytes() == BODY


def test_zenodo_errors_are_clear(server: LocalServer) -> None:
    with pytest.raises(DownloadError, match=r"HTTP 404.*ifeed\.archives"):
        zenodo_files(1, api=server.base + "/nope/")
    with pytest.raises(DownloadError, match=r"cannot reach.*ifeed\.archives"):
        zenodo_files(1, api=f"http://127.0.0.1:{closed_port()}/api/records/")
    with pytest.raises(DownloadError, match="no file list"):
        parse_zenodo_record({"id": 5, "metadata": {}})


def test_pinned_md5_falls_back_when_api_unreachable(server: LocalServer) -> None:
    server.add("/api/records/7971730", _record(server, "list"))
    assert pinned_md5("IFEED_Base.zip", 7971730, api=server.base + "/api/records/") == MD5
    assert pinned_md5("Other.zip", 7971730, api=server.base + "/api/records/") is None
    dead = f"http://127.0.0.1:{closed_port()}/api/records/"
    assert pinned_md5("IFEED_Base.zip", 7971730, api=dead) is None


def test_pinned_md5_wins_over_the_record_api(server: LocalServer, tmp_path: Path) -> None:
    api = server.base + "/api/records/"
    wrong = "0" * 32
    # the API lists a wrong md5 for the file; the md5 pinned in the config is used
    record = {"id": 7, "files": [{"key": "IFEED_Base.zip", "checksum": f"md5:{wrong}"}]}
    server.add("/api/records/7", record)
    url = server.add("/files/IFEED_Base.zip", BODY)
    md5 = expected_md5("IFEED_Base.zip", MD5, 7, api)
    assert md5 == MD5
    download(url, tmp_path / "a.zip", md5=md5, **FAST)
    assert (tmp_path / "a.zip").read_bytes() == BODY
    # and a wrong pin fails even though the API would have been right
    server.add("/api/records/8", {"id": 8, "files": [{"key": "IFEED_Base.zip", "checksum": MD5}]})
    md5 = expected_md5("IFEED_Base.zip", wrong, 8, api)
    with pytest.raises(ChecksumError, match=f"expected {wrong}, got {MD5}"):
        download(url, tmp_path / "b.zip", md5=md5, **FAST)
    assert not (tmp_path / "b.zip").exists()
    # unpinned: the API's md5, which must be one the record publishes
    assert expected_md5("IFEED_Base.zip", None, 8, api, published=[wrong, MD5]) == MD5
    with pytest.raises(ChecksumError, match=r"ifeed\.record_md5s"):
        expected_md5("IFEED_Base.zip", None, 8, api, published=[wrong])


def test_published_md5s_verify_when_the_api_is_unreachable(
    server: LocalServer, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/api/records/"
    assert expected_md5("IFEED_Base.zip", None, 7971730, dead, published=["0" * 32]) is None
    url = server.add("/files/IFEED_Base.zip", BODY)
    download(url, tmp_path / "a.zip", md5_in=["0" * 32, MD5.upper()], **FAST)
    assert (tmp_path / "a.zip").read_bytes() == BODY
    with pytest.raises(ChecksumError, match="none of the published"):
        download(url, tmp_path / "b.zip", md5_in=["0" * 32, "1" * 32], **FAST)
    assert not (tmp_path / "b.zip").exists()
    # a cached copy is re-verified against the published md5s too
    calls = len(server.requests)
    download(url, tmp_path / "a.zip", md5_in=[MD5], **FAST)
    assert len(server.requests) == calls


def _meld_tar() -> bytes:
    import io
    import tarfile

    def tar_gz(members: list[tuple[str, bytes]]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    inner = tar_gz([("train_splits/dia0_utt0.mp4", b"v"), ("train_sent_emo.csv", b"h\n")])
    return tar_gz([("MELD.Raw/train.tar.gz", inner), ("MELD.Raw/dev_sent_emo.csv", b"h\n")])


def _ifeed_zip() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("IFEED_Base/Training/dia1_utt2/frame1_Ross_Happy.jpg", b"jpg")
        zf.writestr("__MACOSX/IFEED_Base/._x", b"meta")
    return buf.getvalue()


def test_acquire_rules_download_verify_and_unpack(server: LocalServer, workdir: Path) -> None:
    import json

    from tests.conftest import run_snakemake

    meld, ifeed = _meld_tar(), _ifeed_zip()
    meld_url = server.add("/MELD.Raw.tar.gz", meld, cut_after=len(meld) // 2)
    ifeed_url = server.add("/records/1/files/IFEED_Base.zip", ifeed)
    entry = {"key": "IFEED_Base.zip", "size": len(ifeed), "links": {"self": ifeed_url}}
    record = {"id": 1, "files": [{**entry, "checksum": "md5:" + hashlib.md5(ifeed).hexdigest()}]}
    server.add("/api/records/1", record)
    override = {
        "synth": {"enabled": False},
        "meld": {"archive": None, "url": meld_url, "md5": hashlib.md5(meld).hexdigest()},
        "ifeed": {
            "archives": [], "record": 1, "zenodo_api": server.base + "/api/records/",
            "files": [{"name": "IFEED_Base.zip", "url": ifeed_url, "md5": None}],
            "record_md5s": ["0" * 32, hashlib.md5(ifeed).hexdigest()],
        },
    }  # fmt: skip
    (workdir / "over.yaml").write_text(json.dumps(override))
    targets = ["results/meld/unpack_report.json", "results/ifeed/unpack_report.json"]
    run_snakemake(
        ["--cores", "1", *targets, "--configfile", "config/demo.yaml", "over.yaml"], cwd=workdir
    )
    assert (workdir / "resources/meld/MELD.Raw.tar.gz").read_bytes() == meld
    unpacked = workdir / "resources/meld/unpacked/MELD.Raw"
    assert (unpacked / "train_splits/dia0_utt0.mp4").read_bytes() == b"v"
    assert len(server.requests_for("/MELD.Raw.tar.gz")) == 2  # the dropped attempt was retried
    ifeed_log = (workdir / "logs/acquire/download_ifeed_IFEED_Base.zip.log").read_text()
    assert "from Zenodo record 1" in ifeed_log and "verified IFEED_Base.zip" in ifeed_log
    report = json.loads((workdir / "results/ifeed/unpack_report.json").read_text())
    assert report["extracted"] == ["IFEED_Base/Training/dia1_utt2/frame1_Ross_Happy.jpg"]
    assert report["skipped"][0]["member"] == "__MACOSX/IFEED_Base/._x"


def _serve_meld_csvs(server: LocalServer, tmp_path: Path) -> dict[str, bytes]:
    bodies = {}
    for split, rows in ANNOTATIONS.items():
        write_csv(tmp_path / f"{split}.csv", rows)
        bodies[split] = (tmp_path / f"{split}.csv").read_bytes()
        server.add(f"/MELD/{split}_sent_emo.csv", bodies[split])
    return bodies


def test_annotation_download_rule_verifies_pinned_md5(
    server: LocalServer, workdir: Path, tmp_path: Path
) -> None:
    import json

    import polars as pl

    from tests.conftest import run_snakemake

    bodies = _serve_meld_csvs(server, tmp_path)
    md5s = {s: hashlib.md5(b).hexdigest() for s, b in bodies.items()}
    urls = {s: f"{server.base}/MELD/{s}_sent_emo.csv" for s in bodies}

    def run(pins: dict[str, str | None], check: bool = True):
        over = {"meld": {"annotations": urls, "annotations_md5": pins}}
        (workdir / "over.yaml").write_text(json.dumps(over))
        return run_snakemake(
            ["--cores", "1", "results/meld/index.parquet",
             "--configfile", "config/meld_text.yaml", "over.yaml"],
            cwd=workdir, check=check,
        )  # fmt: skip

    # a wrong pin: the job fails, says why, and leaves no csv behind
    proc = run({**md5s, "dev": "0" * 32}, check=False)
    assert proc.returncode != 0
    dev_log = (workdir / "logs/acquire/download_meld_annotations_dev.log").read_text()
    assert f"md5 mismatch: expected {'0' * 32}, got {md5s['dev']}" in dev_log
    assert not (workdir / "resources/meld/annotations/dev_sent_emo.csv").exists()

    # dev unpinned: downloaded unverified, its md5 logged for the user to pin
    pins = {**md5s, "dev": None}
    run(pins)
    folder = workdir / "resources/meld/annotations"
    for split, body in bodies.items():
        assert (folder / f"{split}_sent_emo.csv").read_bytes() == body
        log = (workdir / f"logs/acquire/download_meld_annotations_{split}.log").read_text()
        assert f"md5 {md5s[split]}" in log
        assert ("no checksum pinned" in log) == (split == "dev")
    index = pl.read_parquet(workdir / "results/meld/index.parquet")
    assert index.height == sum(len(rows) for rows in ANNOTATIONS.values())

    # a cached csv that changed since its download is re-verified before indexing
    (folder / "test_sent_emo.csv").write_bytes(bodies["test"] + b"9,x,Ross,joy,neutral,9,9,3,4,,\n")
    proc = run(pins, check=False)
    assert proc.returncode != 0
    index_log = (workdir / "logs/meld/index.log").read_text()
    assert "meld.annotations_md5.test" in index_log


def test_official_csvs_fetched_and_verified(server: LocalServer, tmp_path: Path) -> None:
    from crossemotion.ingest.meld.csvs import fetch_official, missing_csvs

    bodies = _serve_meld_csvs(server, tmp_path / "src")
    md5s = {s: hashlib.md5(b).hexdigest() for s, b in bodies.items()}
    dest = fetch_official(tmp_path / "cache", base=server.base + "/MELD/", md5s=md5s)
    assert missing_csvs(dest) == []
    assert (dest / "train_sent_emo.csv").read_bytes() == bodies["train"]
    # the cached copy is re-verified and kept, not fetched again
    server.requests.clear()
    fetch_official(dest, base=server.base + "/MELD/", md5s=md5s)
    assert server.requests == []
    with pytest.raises(ChecksumError, match="md5 mismatch"):
        fetch_official(
            tmp_path / "other", base=server.base + "/MELD/", md5s={**md5s, "dev": "f" * 32}
        )


def test_local_csv_dir_prefers_the_variable_then_skips_with_a_reason(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crossemotion.ingest.meld import csvs as meld_csvs

    bodies = _serve_meld_csvs(server, tmp_path / "src")
    for split, body in bodies.items():
        (tmp_path / "mine").mkdir(exist_ok=True)
        (tmp_path / "mine" / f"{split}_sent_emo.csv").write_bytes(body)
    monkeypatch.setenv(meld_csvs.ENV_VAR, str(tmp_path / "mine"))
    assert meld_csvs.local_csv_dir(cache=tmp_path / "cache")[0] == tmp_path / "mine"
    (tmp_path / "mine" / "dev_sent_emo.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"dev_sent_emo\.csv"):
        meld_csvs.local_csv_dir(cache=tmp_path / "cache")
    monkeypatch.delenv(meld_csvs.ENV_VAR)
    dead = f"http://127.0.0.1:{closed_port()}/MELD/"
    t0 = time.monotonic()
    folder, reason = meld_csvs.local_csv_dir(cache=tmp_path / "cache", base=dead, timeout=2.0)
    assert folder is None and meld_csvs.ENV_VAR in reason
    assert time.monotonic() - t0 < 10  # no retries with backoff: the skip comes at once


def test_meld_text_config_pins_the_official_csvs() -> None:
    import yaml

    from crossemotion.ingest.meld.csvs import OFFICIAL_MD5, SPLITS, official_url
    from tests.conftest import ROOT

    meld = yaml.safe_load((ROOT / "config/meld_text.yaml").read_text())["meld"]
    assert meld["annotations"] == {s: official_url(s) for s in SPLITS}
    assert meld["annotations_md5"] == OFFICIAL_MD5


def test_record_mode_downloads_only_published_files(server: LocalServer, workdir: Path) -> None:
    import json

    from tests.conftest import run_snakemake

    ifeed = _ifeed_zip()
    url = server.add("/records/2/files/IFEED_Base.zip", ifeed)
    md5 = hashlib.md5(ifeed).hexdigest()
    entry = {"key": "IFEED_Base.zip", "size": len(ifeed), "links": {"self": url}}
    server.add("/api/records/2", {"id": 2, "files": [{**entry, "checksum": f"md5:{md5}"}]})

    def run(published: list[str], check: bool = True):
        override = {
            "synth": {"enabled": False},
            "ifeed": {
                "archives": [], "files": [], "record": 2, "record_md5s": published,
                "zenodo_api": server.base + "/api/records/",
            },
        }  # fmt: skip
        (workdir / "over.yaml").write_text(json.dumps(override))
        args = ["--cores", "1", "results/ifeed/unpack_report.json"]
        args += ["--configfile", "config/demo.yaml", "over.yaml"]
        return run_snakemake(args, cwd=workdir, check=check)

    proc = run(["0" * 32], check=False)
    assert proc.returncode != 0
    log = (workdir / "logs/acquire/download_ifeed_record.log").read_text()
    assert f"now lists md5 {md5} for IFEED_Base.zip" in log
    assert not (workdir / "resources/ifeed/IFEED_Base.zip").exists()
    run(["0" * 32, md5])
    listing = json.loads((workdir / "resources/ifeed/zenodo_2.json").read_text())
    assert listing["files"][0]["md5"] == md5
    report = json.loads((workdir / "results/ifeed/unpack_report.json").read_text())
    assert report["extracted"] == ["IFEED_Base/Training/dia1_utt2/frame1_Ross_Happy.jpg"]
