# Every path comes from crossemotion.layout, which the library uses too; the
# final targets of `all` are at the end.


def shard_ids(split):
    n = int(config["meld"]["shards"][split])
    return [f"{i:04d}" for i in range(n)]


def ifeed_shard_ids():
    return [f"{i:04d}" for i in range(int(config["ifeed"]["shards"]))]


def meld_shards(kind, split=None):
    """All shard files of one kind (clips, faces, text) for a split or all."""
    splits = MELD_SPLITS if split is None else [split]
    if kind == "text":
        return [layout.shard_path("meld", "text", s, 0) for s in splits]
    return [layout.shard_path("meld", kind, s, i) for s in splits for i in shard_ids(s)]


def ifeed_shards(split=None):
    splits = IFEED_SPLITS if split is None else [split]
    return [
        layout.shard_path("ifeed", "faces", s, i)
        for s in splits
        for i in ifeed_shard_ids()
    ]


def named_shards(dataset, kinds):
    """Named inputs ``{kind}_{split}`` (crossemotion.layout.input_name), read back by name."""
    if dataset == "ifeed" and set(kinds) != {"faces"}:
        raise ValueError(f"IFEED has faces shards only, not {sorted(kinds)}")
    named = {}
    for kind in kinds:
        for split in MELD_SPLITS if dataset == "meld" else IFEED_SPLITS:
            files = (
                meld_shards(kind, split) if dataset == "meld" else ifeed_shards(split)
            )
            if files:
                named[layout.input_name(kind, split)] = files
    return named


def align_shards():
    """Shards of the IFEED -> MELD alignment (ifeed.align.shards)."""
    n = int(config["ifeed"].get("align", {}).get("shards", 1))
    return [f"results/ifeed/alignment/{layout.shard_name(i)}" for i in range(n)]


def meld_status_shards():
    return [
        f"results/meld/status/{s}/{layout.shard_name(i)}"
        for s in MELD_SPLITS
        for i in shard_ids(s)
    ]


def meld_speaker_shards():
    """Per MELD clips shard: each clip's speaker choice (the faces stage's second output)."""
    return [
        f"results/meld/speakers/{s}/{layout.shard_name(i)}"
        for s in MELD_SPLITS
        for i in shard_ids(s)
    ]


def model_dir(model, dataset):
    return str(layout.model_dir(model, dataset))


def run_files(names):
    files = []
    for model, dataset in model_runs():
        files += [
            f"{model_dir(model, dataset)}/{d}{name}"
            for d in seed_dirs()
            for name in names
        ]
    return files


def transfer_targets():
    return sorted({t for _s, t, _m in transfer_cells()})


def transfer_files(names, with_target_only=True):
    """Every seed's files of the transfer cells (and of the target-only runs)."""
    files = [
        f"{layout.transfer_dir(s, t, m)}/{d}{name}"
        for s, t, m in transfer_cells()
        for d in seed_dirs()
        for name in names
    ]
    if with_target_only:
        files += [
            f"{model_dir(transfer_model(), t)}/{d}{name}"
            for t in transfer_targets()
            if (transfer_model(), t) in model_runs()
            for d in seed_dirs()
            for name in names
        ]
    return list(dict.fromkeys(files))


# ------------------------------------------------------------------ targets
def final_targets():
    targets = ["results/meld/manifest.parquet"] if not text_only() else []
    targets += meld_shards("text")
    for model, dataset in model_runs():
        targets += [
            f"{model_dir(model, dataset)}/{d}{layout.METRICS}" for d in seed_dirs()
        ]
    if not text_only():
        targets += [
            "results/ifeed/manifest.parquet",
            "results/ifeed/alignment.parquet",
            "results/tables/speaker_faces.csv",
        ]
        targets += transfer_files([layout.METRICS], with_target_only=False)
    # tables and report in every mode, so a text-only run is reported too
    targets += [
        "results/tables/benchmark.csv",
        "results/tables/character_wise.csv",
        "results/tables/transfer.csv",
        "results/report.html",
    ]
    return targets
