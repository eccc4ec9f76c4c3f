"""Manifest statuses and the bad-item budget shared by MELD and IFEED."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

# status speaks of the item itself; detection outcomes are their own columns
OK = "ok"
MISSING = "missing"
CORRUPT = "corrupt"
EMPTY = "empty"  # zero-byte file
NO_VIDEO = "no_video"
OVERLONG = "overlong"  # still decoded, within bounds
UNANNOTATED = "unannotated"
UNKNOWN_LABEL = "unknown_label"
UNPARSABLE = "unparsable_name"
UNDECODABLE = "undecodable_image"
SKIPPED = "skipped"  # e.g. __MACOSX, dotfiles, non-image members
# an archive member whose name does not decode (the unpacker escapes its raw bytes)
BAD_NAME = "bad_name"

# statuses that still yield usable data
USABLE = frozenset({OK, OVERLONG})
# statuses that do not count against the bad-item budget: not defects of an
# annotated item (extra clips, metadata members)
NEUTRAL = frozenset({UNANNOTATED, SKIPPED, BAD_NAME})


class TooManyBadItems(RuntimeError):
    pass


def check_bad_fraction(statuses: Iterable[str], max_fraction: float, dataset: str) -> float:
    """Raise TooManyBadItems when the share of bad items exceeds the budget.

    Returns the measured share so callers can log it.
    """
    counted = [s for s in statuses if s not in NEUTRAL]
    if not counted:
        raise TooManyBadItems(f"{dataset}: no items found at all; check the archive and paths")
    bad = sum(1 for s in counted if s not in USABLE)
    share = bad / len(counted)
    if share > max_fraction:
        raise TooManyBadItems(
            f"{dataset}: {bad} of {len(counted)} items are bad ({share:.1%}), above "
            f"max_bad_fraction={max_fraction:.1%}; see the manifest's status/reason columns"
        )
    return share


def build_meld_manifest(
    index: pl.DataFrame,
    statuses: pl.DataFrame,
    faces: pl.DataFrame,
    speakers: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The MELD manifest: index rows, with decoded clips' statuses and face counts.

    ``index`` is the MELD index (polars), ``statuses`` the concatenated decode
    status shards, ``faces`` the concatenated faces shards (at least
    ``split, key``). ``faces_found`` counts the sampled frames of a clip in
    which a (speaker) face was found; null where the clip was not decoded.
    ``speakers`` (the faces stage's speakers shards) adds each decoded clip's
    ``speaker_status`` (ok, no_face, one_frame), ``speaker_reason``,
    ``speaker_method`` and ``speaker_confidence``; the decode statuses give
    ``audio_status`` (ok, none, corrupt) and ``audio_reason``. A clip's sound
    or speaker never changes its ``status``: the clip is still usable.
    """

    dec = statuses.select(
        "split",
        "key",
        pl.col("status").alias("_dstatus"),
        pl.col("reason").alias("_dreason"),
        "duration",
        "has_audio",
        "n_frames",
        "decode_seconds",
        *[c for c in ("audio_status", "audio_reason") if c in statuses.columns],
    )
    found = faces.group_by("split", "key").agg(pl.len().cast(pl.Int32).alias("_faces"))
    out = index.join(dec, on=["split", "key"], how="left", nulls_equal=False)
    out = out.join(found, on=["split", "key"], how="left", nulls_equal=False)
    decoded = pl.col("_dstatus").is_not_null()
    usable = pl.col("_dstatus").is_in(list(USABLE))
    out = out.with_columns(
        pl.when(decoded).then(pl.col("_dstatus")).otherwise(pl.col("status")).alias("status"),
        pl.when(decoded).then(pl.col("_dreason")).otherwise(pl.col("reason")).alias("reason"),
        pl.when(usable)
        .then(pl.col("_faces").fill_null(0))
        .otherwise(None)
        .cast(pl.Int32)
        .alias("faces_found"),
    )
    out = out.drop("_dstatus", "_dreason", "_faces")
    if speakers is not None:
        chosen = speakers.select(
            "split",
            "key",
            pl.col("status").alias("speaker_status"),
            pl.col("reason").alias("speaker_reason"),
            pl.col("method").alias("speaker_method"),
            pl.col("confidence").alias("speaker_confidence"),
        )
        out = out.join(chosen, on=["split", "key"], how="left", nulls_equal=False)
    return out


def meld_summary(manifest: pl.DataFrame, share: float | None = None) -> str:
    """Markdown: counts by split x status, face-found figures, the bad share."""

    table = (
        manifest.group_by("split", "status")
        .len()
        .pivot(on="status", index="split", values="len")
        .fill_null(0)
    )
    order = {"train": 0, "dev": 1, "test": 2}
    table = table.sort(pl.col("split").replace_strict(order, default=9))
    statuses = [c for c in table.columns if c != "split"]
    lines = [
        "# MELD manifest summary",
        "",
        "| split | " + " | ".join(statuses) + " | total |",
        "|---|" + "---:|" * (len(statuses) + 1),
    ]
    for row in table.iter_rows(named=True):
        total = sum(row[s] for s in statuses)
        lines.append(
            f"| {row['split']} | " + " | ".join(str(row[s]) for s in statuses) + f" | {total} |"
        )
    decoded = manifest.filter(pl.col("faces_found").is_not_null())
    if decoded.height:
        frames = decoded["n_frames"].sum()
        lines += [
            "",
            f"Decoded clips: {decoded.height}; clips with at least one face: "
            f"{(decoded['faces_found'] > 0).sum()} "
            f"({(decoded['faces_found'] > 0).mean():.1%}); frames with a face: "
            f"{decoded['faces_found'].sum()} of {frames} "
            f"({decoded['faces_found'].sum() / max(frames, 1):.1%}).",
        ]
        if "decode_seconds" in decoded.columns:
            lines.append(
                f"Decode time per clip: mean {decoded['decode_seconds'].mean() * 1000:.0f}"
                f" ms, max {decoded['decode_seconds'].max() * 1000:.0f} ms."
            )
        for column, what in (("speaker_status", "Speaker"), ("audio_status", "Sound")):
            if column in decoded.columns:
                counts = decoded.group_by(column).len().sort(column).iter_rows()
                lines.append(f"{what}: " + ", ".join(f"{k} {n}" for k, n in counts) + ".")
    if share is not None:
        lines += [
            "",
            f"Bad share (statuses other than ok/overlong among annotated items): {share:.2%}.",
        ]
    return "\n".join(lines) + "\n"
