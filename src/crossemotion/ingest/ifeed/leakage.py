"""What each IFEED image leaks into MELD, from the alignment (crossemotion.ingest.ifeed.align).

An IFEED image is a frame of one MELD utterance. It *leaks* into MELD split
``s`` when that utterance sits in ``s``: a model that trained on the image
has seen that utterance's face. The alignment says which utterance for the
``matched`` images. For the others (``ambiguous``, ``unmatched``,
``no_source``) the policy ``transfer.unaligned`` decides:

* ``all_key_splits`` (default, conservative): the image leaks into every MELD
  utterance carrying its ``dia{D}_utt{U}`` key, in any split;
* ``none``: it leaks nowhere (e.g. when unmatched images are known to come
  from outside MELD).

``leak_links`` writes one row per (image, MELD utterance) link;
``excluded_items`` turns the links into what a transfer cell leaves out of
its evaluation:

* MELD -> IFEED (the source model trained on MELD train): IFEED images linked
  to MELD train (its epoch was chosen on MELD dev, which is not counted);
* IFEED -> MELD (trained on IFEED Training, its epoch chosen on a carve-out of
  it): MELD dev/test utterances linked to an IFEED Training image.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from crossemotion.ingest.ifeed.align import MATCHED

POLICIES = ("all_key_splits", "none")
EVAL_SPLITS = ("dev", "test")
# the MELD split a MELD-trained model learnt from
MELD_SEEN = ("train",)

LINK_SCHEMA = {
    "member": pl.String,
    "ifeed_split": pl.String,
    "meld_split": pl.String,
    "key": pl.String,
    "status": pl.String,
    "basis": pl.String,
}


def leak_links(alignment: pl.DataFrame, index: pl.DataFrame, policy: str) -> pl.DataFrame:
    """(IFEED image, MELD split, key) links; ``basis`` says why (aligned / the policy)."""
    if policy not in POLICIES:
        raise ValueError(f"transfer.unaligned must be one of {POLICIES}, not {policy!r}")
    cols = ["member", "ifeed_split", "key", "status"]
    matched = alignment.filter(pl.col("status") == MATCHED).select(
        *cols, "meld_split", pl.lit("aligned").alias("basis")
    )
    parts = [matched]
    if policy == "all_key_splits":
        meld_keys = index.select(pl.col("split").alias("meld_split"), "key").drop_nulls().unique()
        others = alignment.filter(
            (pl.col("status") != MATCHED) & pl.col("key").is_not_null()
        ).select(cols)
        parts.append(
            others.join(meld_keys, on="key", how="inner").with_columns(
                pl.lit("unaligned: every MELD split with the key").alias("basis")
            )
        )
    links = pl.concat([p.select(list(LINK_SCHEMA)) for p in parts], how="vertical_relaxed")
    return links.cast(LINK_SCHEMA).unique().sort("member", "meld_split")  # type: ignore[arg-type]


def excluded_items(links: pl.DataFrame, source: str, target: str) -> dict[str, set[str]]:
    """Evaluated split of the target -> items to leave out (IFEED members / MELD keys)."""
    if target == "ifeed" and source == "meld":
        members = set(links.filter(pl.col("meld_split").is_in(MELD_SEEN))["member"].to_list())
        return {s: members for s in EVAL_SPLITS}
    if target == "meld" and source == "ifeed":
        seen = links.filter(pl.col("ifeed_split") == "train")
        return {
            s: set(seen.filter(pl.col("meld_split") == s)["key"].to_list()) for s in EVAL_SPLITS
        }
    raise ValueError(f"no leakage rule for {source} -> {target}")


RULES = {
    ("meld", "ifeed"): "IFEED images linked to MELD train (by the alignment, or by the "
    "transfer.unaligned policy) are left out",
    ("ifeed", "meld"): "MELD dev/test utterances linked to an IFEED Training image (by the "
    "alignment, or by the transfer.unaligned policy) are left out",
}


def summary(links: pl.DataFrame, alignment: pl.DataFrame) -> dict[str, int]:
    """Counts for logs and the report: images per alignment status, links per basis."""
    out = {f"images_{s}": int((alignment["status"] == s).sum()) for s in _statuses(alignment)}
    for basis, n in links.group_by("basis").len().iter_rows():
        out[f"links_{basis}"] = int(n)
    return out


def _statuses(alignment: pl.DataFrame) -> Iterable[str]:
    return sorted(alignment["status"].drop_nulls().unique().to_list())
