"""Provenance of a table: config hash, git commit, data fingerprint, demo flag."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from crossemotion.config import config_hash

# Manifests are small and define the data, so their rows are hashed (timings
# aside); shards are large, so their names and sizes stand in for them.
_CONTENT_HASH_LIMIT = 64 * 1024 * 1024
# how long a step took, not what the data is (start/end_seconds are data)
_TIMING_COLUMNS = frozenset({"decode_seconds"})


def git_commit(root: str | Path = ".") -> str:
    """HEAD of the repository at ``root`` ('-dirty' appended when files changed)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=20
        )
        if head.returncode != 0:
            return "unknown"
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = head.stdout.strip()[:12]
    return f"{commit}-dirty" if status.stdout.strip() else commit


def data_fingerprint(paths: Iterable[str | Path]) -> str:
    """Short hash over the data files a table rests on (missing files count too)."""
    digest = hashlib.sha256()
    for path in sorted({str(p) for p in paths}):
        p = Path(path)
        digest.update(path.encode())
        if not p.is_file():
            digest.update(b"<missing>")
            continue
        size = p.stat().st_size
        if p.name.endswith("manifest.parquet") and size <= _CONTENT_HASH_LIMIT:
            digest.update(_manifest_digest(p))
            continue
        digest.update(str(size).encode())
    return digest.hexdigest()[:12]


def _manifest_digest(path: Path) -> bytes:
    """The manifest's rows without its timing columns (``decode_seconds``: the same
    data decoded twice takes other times, and a fingerprint must not change for it)."""
    import polars as pl

    try:
        frame = pl.read_parquet(path)
    except Exception:  # not Parquet (a damaged file): its bytes are what there is
        return hashlib.sha256(path.read_bytes()).digest()
    timing = [c for c in frame.columns if c in _TIMING_COLUMNS]
    return hashlib.sha256(frame.drop(timing).write_csv().encode()).digest()


def is_demo(config: Mapping[str, Any]) -> bool:
    return bool(config.get("demo", config.get("synth", {}).get("enabled", False)))


def provenance(
    config: Mapping[str, Any], data_files: Iterable[str | Path], root: str | Path = "."
) -> dict[str, Any]:
    return {
        "config_hash": config_hash(config),
        "git_commit": git_commit(root),
        "data_fingerprint": data_fingerprint(data_files),
        "demo": is_demo(config),
    }


def run_provenance(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``provenance`` from a report rule's settings (``config``, ``data_files``, ``root``:
    the workflow's ``report_params()``)."""
    return provenance(
        settings.get("config", {}), settings.get("data_files", []), settings.get("root", ".")
    )


def markdown_header(title: str, prov: Mapping[str, Any]) -> str:
    """Block quoted at the top of every Markdown table."""
    lines = [f"# {title}", ""]
    if prov.get("demo"):
        lines += [
            "> **DEMO DATA (generated)** — not a benchmark of MELD/IFEED; the "
            "numbers only show that the pipeline runs end to end.",
            ">",
        ]
    lines += [
        f"> config hash `{prov['config_hash']}` · git commit `{prov['git_commit']}` · "
        f"data fingerprint `{prov['data_fingerprint']}` · "
        f"data: {'demo (generated)' if prov.get('demo') else 'real'}",
        "",
    ]
    return "\n".join(lines)
